"""What a conformance worker runs: ``celery -A tests.conformance.celery_app worker``."""

from __future__ import annotations

import os

from tests.conformance.apps import QUEUE_ENV, make_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = make_app(queue=os.environ.get(QUEUE_ENV), set_as_current=True)
