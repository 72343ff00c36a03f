"""The control: tasktrail never changes what Celery reports.

A handful of cases run once on a worker with Celery's stock Redis result backend and
once on a worker with tasktrail's; ``AsyncResult``'s state and result (an exception by
its type and text) must be the same for every role in the case.
"""

from __future__ import annotations

import pprint
from typing import Any

import pytest

from .cases import CASES, Case
from .conftest import CONTROL, CONTROL_PARTNER, Stage, Variant, case_params, plan_name, selected
from .judge import Judge

# transaction=True: get_run() reads rows the workers' flushers commit (and pytest-django
# sets the test database up only for tests that are marked).
pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.once]

CONTROL_CASES = [
    "success",
    "custom_exception",
    "unrebuildable_exception",
    "kombu_types_result",
    "set_result",
    "retry_exhausted",
    "reject_drop",
    "ignore",
    "update_state_failure_then_ignore",
    "ignore_result",
    "expired",
    "unregistered",
    "chain_failing_middle",
    "chord_failing_header",
    "replace_with_group",
    "reused_id_after_failure",
]
assert set(CONTROL_CASES) <= set(CASES)


@pytest.fixture
def control(request: pytest.FixtureRequest, stage: Stage, django_db_blocker: Any) -> Judge:
    pairs = selected(request.session, "control")
    stage.start([CONTROL, CONTROL_PARTNER])
    with django_db_blocker.unblock():
        for _, case in pairs:
            for variant in (CONTROL, CONTROL_PARTNER):
                ctx = stage.ctx(variant, observe_only=True)
                stage.launch(plan_name(variant, case, "control"), ctx, case)
    return stage.judge


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("group", "variant", "case"), case_params("control", CONTROL_CASES))
def test_tasktrail_does_not_change_what_celery_reports(
    group: str, variant: Variant, case: Case, control: Judge
) -> None:
    stock = control.wait(plan_name(CONTROL, case, group))
    ours = control.wait(plan_name(CONTROL_PARTNER, case, group))
    problems = [f"stock backend: {text}" for text in stock.failures]
    problems += [f"tasktrail backend: {text}" for text in ours.failures]
    for role in sorted(set(stock.observed) | set(ours.observed)):
        theirs, mine = stock.observed.get(role), ours.observed.get(role)
        if theirs != mine:
            problems.append(
                f"{role}:\n  stock Celery:  {pprint.pformat(theirs)}\n"
                f"  with tasktrail: {pprint.pformat(mine)}"
            )
    if problems:
        pytest.fail(f"{case.name}: AsyncResult differs\n" + "\n".join(problems), pytrace=False)
