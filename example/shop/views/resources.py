"""Resource crawl (seed 000): a live feed on the resource's channel ``crawl:<uuid>``."""

from __future__ import annotations

import uuid

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from tasktrail import accepted, enqueue

from ..models import Resource
from ..tasks.crawl import crawl_resource
from .api import api, error, validated


class ResourceForm(forms.Form):
    url = forms.URLField(required=False)
    max_pages = forms.IntegerField(min_value=1, max_value=100, required=False)
    delay = forms.FloatField(min_value=0, max_value=5, required=False)


def _resource_json(request: HttpRequest, resource: Resource) -> dict[str, object]:
    return {
        "uuid": str(resource.uuid),
        "url": resource.url,
        "channel": resource.channel,
        "pages_found": resource.pages_found,
        "broken_links": resource.broken_links,
        "last_crawled_at": resource.last_crawled_at,
        "page_url": request.build_absolute_uri(reverse("shop:resource", args=[resource.uuid])),
        "subject_events_url": request.build_absolute_uri(
            reverse("tasktrail:subject-events", args=[resource.channel])
        ),
    }


def _crawl(request: HttpRequest, resource: Resource) -> HttpResponse:
    run = enqueue(crawl_resource, resource.pk, owner=request.user, subject=resource.channel)
    return accepted(run, request, resource=_resource_json(request, resource))


@api("POST")
def create(request: HttpRequest) -> HttpResponse:
    form = validated(ResourceForm, request)
    if isinstance(form, JsonResponse):
        return form
    values = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
    values.setdefault("url", settings.EXAMPLE_BASE_URL.rstrip("/") + "/")
    with transaction.atomic():
        resource = Resource.objects.create(owner=request.user, **values)
        return _crawl(request, resource)


@api("POST")
def crawl(request: HttpRequest, resource_uuid: uuid.UUID) -> HttpResponse:
    resource = Resource.objects.filter(uuid=resource_uuid, owner=request.user).first()
    if resource is None:
        return error(404, "No such resource.")
    return _crawl(request, resource)


@api("GET")
def detail(request: HttpRequest, resource_uuid: uuid.UUID) -> HttpResponse:
    resource = Resource.objects.filter(uuid=resource_uuid, owner=request.user).first()
    if resource is None:
        return error(404, "No such resource.")
    return JsonResponse(_resource_json(request, resource))


@login_required
def page(request: HttpRequest) -> HttpResponse:
    resources = Resource.objects.filter(owner=request.user).order_by("-pk")[:10]
    return render(
        request,
        "shop/resources.html",
        {"resources": resources, "default_url": settings.EXAMPLE_BASE_URL.rstrip("/") + "/"},
    )


@login_required
def resource_page(request: HttpRequest, resource_uuid: uuid.UUID) -> HttpResponse:
    resource = get_object_or_404(Resource, uuid=resource_uuid, owner=request.user)
    return render(
        request,
        "shop/resource.html",
        {"resource": resource, "data": _resource_json(request, resource)},
    )
