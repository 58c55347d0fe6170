"""Data: IMDB-WIKI metadata, image checks, duplicates, splits, preparation and the tf.data
input pipeline (only pipeline.py imports TensorFlow, so the checks run in light workers)."""
