"""absl entry points of the age-tf-* console scripts (thin: flags in, one library call).

Importing a command loads no TensorFlow: its flags come from config dataclasses that need
none, so --help and flag errors answer at once. A command whose work uses TensorFlow imports
it (quietly: quiet.py) after its flags are read, before its library does (common.Command).
"""
