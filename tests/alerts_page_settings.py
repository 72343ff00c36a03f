"""Settings of the uvicorn the alerts browser test starts: the test settings plus the
alert configuration the test hands over as JSON (TASKTRAIL_TEST_ALERTS)."""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import TASKTRAIL

TASKTRAIL = {**TASKTRAIL, "ALERTS": json.loads(os.environ.get("TASKTRAIL_TEST_ALERTS", "{}"))}
