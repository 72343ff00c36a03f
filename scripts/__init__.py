"""Scripts that run real Celery workers against tasktrail and compare what it recorded
with what Celery did (``uv run python scripts/<name>.py --help``)."""
