"""The run page's "Replay with changes" form: a finished run published again with the
arguments the operator edited (through :func:`tasktrail.replay.replay`, audited).

A refused edit shows the page again (HTTP 400) with the error and the operator's text
as typed; nothing is published.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import redirect

from tasktrail import replay as replaying
from tasktrail.actions import UNREACHABLE, ActionRefused, unreachable_message
from tasktrail.runs import find_run

from .access import change_required
from .views import render_run

logger = logging.getLogger("tasktrail")


@change_required
def replay_run(request: HttpRequest, run_id: str) -> HttpResponseBase:
    run = find_run(run_id)
    if run is None:
        raise Http404("No such run.")
    typed = {"args": request.POST.get("args", ""), "kwargs": request.POST.get("kwargs", "")}
    try:
        args, kwargs = replaying.parse_arguments(typed["args"], typed["kwargs"])
        new = replaying.replay(
            run.id,
            args,
            kwargs,
            actor=request.user,
            address=request.META.get("REMOTE_ADDR") or None,
        )
    except ActionRefused as exc:
        return render_run(request, run, {**typed, "error": str(exc)}, status=400)
    except UNREACHABLE as exc:
        error = unreachable_message(exc)
        return render_run(request, run, {**typed, "error": error}, status=503)
    logger.info("tasktrail: %s replayed %s with changes as %s", request.user, run.id, new.id)
    messages.success(request, f"Replayed {run.id} with changes as {new.id}.")
    return redirect("tasktrail-dashboard:run", run_id=new.id)
