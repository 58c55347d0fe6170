"""Synthetic IMDB-WIKI: rendered faces with known ages and defects, in the release format."""
