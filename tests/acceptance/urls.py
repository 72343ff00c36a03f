"""The acceptance server's URLconf: tasktrail's API under ``tasks/`` and webhook intake."""

from __future__ import annotations

from django.urls import include, path

from tasktrail.webhooks import GitHubSignature, HmacSha256, StripeSignature, webhook_view
from tests.acceptance.tasks import hook

SECRET = "acceptance-webhook-secret"
HOOK_QUEUE_SUFFIX = "-acc-hooks"


def _queue() -> str:
    from django.conf import settings

    return f"{settings.TASKTRAIL['KEY_PREFIX']}{HOOK_QUEUE_SUFFIX}"


urlpatterns = [
    path("tasks/", include("tasktrail.urls")),
    path(
        "hooks/hmac/",
        webhook_view(hook, provider=HmacSha256(secrets=[SECRET], name="hmac"), queue=_queue()),
    ),
    path(
        "hooks/stripe/",
        webhook_view(hook, provider=StripeSignature(secrets=[SECRET]), queue=_queue()),
    ),
    path(
        "hooks/github/",
        webhook_view(hook, provider=GitHubSignature(secrets=[SECRET]), queue=_queue()),
    ),
]
