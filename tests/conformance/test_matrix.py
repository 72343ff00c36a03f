"""The matrix: for every case and every worker variant, tasktrail's record of every task
id involved agrees with what Celery's own ``AsyncResult`` reports (see ``cases/``)."""

from __future__ import annotations

import pytest

from .cases import Case
from .conftest import Variant, case_params, plan_name
from .judge import Judge

# transaction=True: get_run() reads rows the workers' flushers commit (and pytest-django
# sets the test database up only for tests that are marked).
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.once]


@pytest.mark.timeout(600)  # the first verdict includes starting the workers
@pytest.mark.parametrize(("group", "variant", "case"), case_params("matrix"))
def test_tasktrail_agrees_with_celery(
    group: str, variant: Variant, case: Case, matrix: Judge
) -> None:
    plan = matrix.wait(plan_name(variant, case, group))
    if plan.failures:
        pytest.fail(plan.report(), pytrace=False)
