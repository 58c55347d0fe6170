"""Serving: the age of face crops and of the faces in ordinary photos."""
