"""age_tf: facial age regression by transfer learning on IMDB-WIKI (Keras 3 / TensorFlow)."""

__version__ = "0.1.0"
