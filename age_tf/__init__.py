"""age_tf: facial age regression by transfer learning on IMDB-WIKI (Keras 3 / TensorFlow)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from age_tf import AgeModel` (the served model), imported on first use: importing the
    package for a command's --help must not start TensorFlow."""
    if name == "AgeModel":
        from age_tf.serve.served_model import AgeModel

        return AgeModel
    raise AttributeError(f"module 'age_tf' has no attribute {name!r}")
