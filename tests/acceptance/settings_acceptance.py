"""Settings of the acceptance tier's own workers and server: ``tests.settings`` plus
short liveness bounds (``TASKTRAIL_ACC_HEARTBEAT``, ``TASKTRAIL_ACC_LOST_AFTER``), a
route for re-queued acceptance tasks, and a URLconf with a webhook view.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import KEY_PREFIX, TASKTRAIL

TASKTRAIL = {
    **TASKTRAIL,
    "HEARTBEAT_INTERVAL": float(os.environ.get("TASKTRAIL_ACC_HEARTBEAT", "0.5")),
    "LOST_AFTER": float(os.environ.get("TASKTRAIL_ACC_LOST_AFTER", "3")),
}
ROOT_URLCONF = "tests.acceptance.urls"

# A default route for acceptance tasks; re-queued runs ignore it and go back to the
# queue they were enqueued on (test_requeued_run_goes_back_to_the_queue_it_was_enqueued_on).
REQUEUE_QUEUE = f"{KEY_PREFIX}-acc-requeue"
CELERY_TASK_ROUTES = {"acceptance.*": {"queue": REQUEUE_QUEUE}}
# One message per free process: every message a victim holds is one it is running.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
