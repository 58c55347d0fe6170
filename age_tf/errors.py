"""The errors every floor raises for bad input (one home, imported by readers and commands
alike; light: no numeric library)."""


class DataError(ValueError):
    """Bad input data: the message names the file and what to do."""
