"""``python -m example``: the one command that runs the reference project."""
