"""The operator's dashboard: ``path("ops/", include("tasktrail.dashboard.urls"))``.

Staff only; staff without the ``tasktrail.change_taskrun`` permission see it read-only.
Server-rendered pages with live updates from the event streams (vanilla JS).
"""
