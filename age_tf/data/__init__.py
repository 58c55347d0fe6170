"""IMDB-WIKI metadata, image checks, duplicates, splits and the synthetic stand-in."""
