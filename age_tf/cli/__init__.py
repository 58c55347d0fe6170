"""absl entry points of the age-tf-* console scripts (thin: flags in, one library call)."""
