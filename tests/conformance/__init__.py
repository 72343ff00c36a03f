"""Conformance tier: real workers, with Celery's own ``AsyncResult`` as the referee."""
