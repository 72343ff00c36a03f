"""tasktrail's reference project: every scenario of the seeds, on one command.

Run it with ``uv run python -m example`` (``--smoke`` to check every scenario).
"""
