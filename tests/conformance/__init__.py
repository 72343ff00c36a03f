"""Conformance tier: real workers, with Celery's own ``AsyncResult`` as the referee.

``uv run pytest tests/conformance`` runs every case (``cases/``) on a prefork and a
threads worker on the tests' Redis broker, then the control run (``test_control.py``);
``TASKTRAIL_CONFORMANCE_FULL=1`` adds a solo worker and prefork/threads workers on
RabbitMQ. Worker logs: ``tests/.<prefix>.conf-<variant>.log``.

- ``tasks.py``: the tasks, with a Redis counter per execution where counts matter;
- ``cases/``: one case per Celery behaviour (a module per theme), and the steps
  that judge it;
- ``referee.py``: Celery's answer, tasktrail's record, and their differences;
- ``judge.py``: advances every case's steps together, so nothing sleeps;
- ``conftest.py``: the worker variants; ``apps.py``/``celery_app.py``: their Celery app.
"""
