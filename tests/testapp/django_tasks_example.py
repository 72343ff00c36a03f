# The complete example of docs/django-tasks.md (a test keeps the two equal and runs it).
from django.http import HttpRequest, HttpResponseBase
from django.tasks import TaskContext, task
from django.views.decorators.http import require_POST

from tasktrail import accepted, feed, get_run, progress


@task(takes_context=True)
def build_report(context: TaskContext, year: int) -> dict[str, int]:
    months = 12
    for month in range(1, months + 1):
        progress(month, months, f"{year}-{month:02d}")  # live, through the result id
    feed(f"Report {year} ready (attempt {context.attempt})", "success")
    return {"year": year, "months": months}


@require_POST
def start_report(request: HttpRequest) -> HttpResponseBase:
    result = build_report.enqueue(int(request.POST.get("year", "2025")))
    # The TaskResult id is the tasktrail run id: 202 with the status and events URLs.
    return accepted(get_run(result.id), request, with_token=True)
