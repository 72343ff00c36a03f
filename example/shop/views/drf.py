"""The crawl scenario (seed 000) as the seed writes it: a DRF ``ModelViewSet`` whose
``perform_create`` dispatches with plain ``apply_async(task_id=str(instance.uuid))``.

tasktrail needs no change at that call site: ``RunOwnerMiddleware`` makes the run the
requesting user's (Token, Basic or session: DRF authenticates), ``owned_by`` names the
resource's channel as its subject, and ``RunActionsMixin`` adds ``process/`` (202),
``runs/`` and ``runs/<id>/cancel/``. The run's status and events are tasktrail's own URLs
(``/tasks/<uuid>/``), which authenticate the same way.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import permissions, routers, serializers, viewsets
from rest_framework.authtoken.views import obtain_auth_token

from tasktrail import owned_by
from tasktrail.contrib.rest_framework.viewsets import RunActionsMixin

from ..models import Resource
from ..tasks.crawl import crawl_resource


class ResourceSerializer(serializers.ModelSerializer):
    status_url = serializers.SerializerMethodField()
    events_url = serializers.SerializerMethodField()

    class Meta:
        model = Resource
        fields = [
            "uuid", "url", "max_pages", "delay", "pages_found", "broken_links",
            "last_crawled_at", "status_url", "events_url",
        ]  # fmt: skip
        read_only_fields = ["pages_found", "broken_links", "last_crawled_at"]

    def _url(self, name: str, resource: Resource) -> str:
        url = reverse(f"tasktrail:{name}", args=[str(resource.uuid)])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url

    def get_status_url(self, resource: Resource) -> str:
        """The run the create started: its id is the resource's uuid."""
        return self._url("run-detail", resource)

    def get_events_url(self, resource: Resource) -> str:
        return self._url("run-events", resource)


class ResourceViewSet(RunActionsMixin, viewsets.ModelViewSet):
    serializer_class = ResourceSerializer
    permission_classes = [permissions.IsAuthenticated]
    lookup_field = "uuid"
    run_task = crawl_resource  # POST resources/<uuid>/process/ crawls again (202)

    def get_queryset(self) -> Any:
        return Resource.objects.filter(owner=self.request.user).order_by("-pk")

    def get_run_subject(self, obj: Resource) -> str:
        return obj.channel  # the crawl's feed goes to the resource's channel

    def perform_create(self, serializer: ResourceSerializer) -> None:
        resource = serializer.save(owner=self.request.user)
        with owned_by(subject=resource.channel):
            crawl_resource.apply_async((resource.pk,), task_id=str(resource.uuid))


router = routers.SimpleRouter()
router.register("resources", ResourceViewSet, basename="drf-resource")
token_view = obtain_auth_token
