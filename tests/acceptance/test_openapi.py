"""docs/openapi.yaml cannot drift from the code: every tasktrail route in the running
URLconf is described with exactly the methods the view takes, every described path
exists, and the run and 202 bodies have the documented fields.

No YAML parser is locked in the project, so this reads the file's block layout (paths
at two spaces, methods at four; schemas' ``properties`` one level deeper), which the
file keeps on purpose.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tasktrail import Status
from tasktrail.http import accepted, run_urls
from tasktrail.records import Progress, RunData

pytestmark = pytest.mark.acceptance

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _block(lines: list[str], header: str, indent: int) -> list[str]:
    """The lines under ``header`` (a key at ``indent``) until the next key at that indent."""
    start = lines.index(" " * indent + header) + 1
    block = []
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    return block


def documented_paths() -> dict[str, set[str]]:
    lines = SPEC.read_text().splitlines()
    paths: dict[str, set[str]] = {}
    current = None
    for line in _block(lines, "paths:", 0):
        if match := re.fullmatch(r"  (/\S*):", line):
            current = match.group(1)
            paths[current] = set()
        elif (match := re.fullmatch(r"    ([a-z]+):", line)) and match.group(1) in METHODS:
            assert current is not None
            paths[current].add(match.group(1))
    return paths


def schema_properties(name: str) -> tuple[set[str], set[str]]:
    lines = SPEC.read_text().splitlines()
    block = _block(_block(_block(lines, "components:", 0), "schemas:", 2), f"{name}:", 4)
    required: set[str] = set()
    for line in block:
        if match := re.fullmatch(r"      required: \[(.*)\]", line):
            required = {item.strip() for item in match.group(1).split(",")}
    props = {
        m.group(1)
        for line in _block(block, "properties:", 6)
        if (m := re.fullmatch(r"        ([a-z_]+):.*", line))
    }
    return required, props


def tasktrail_routes() -> dict[str, str]:
    """Every named tasktrail route as an OpenAPI path template, with a sample URL."""
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == "tasktrail":
            mount = "/" + str(entry.pattern)
            break
    else:
        raise AssertionError("tasktrail.urls is not mounted in the running URLconf")
    routes = {}
    for pattern in entry.url_patterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name is None:
            continue  # the JSON 404 catch-all for everything else under the prefix
        route = str(pattern.pattern)
        template = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        sample = mount + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(uuid.uuid4()), route)
        routes[template] = sample
    return routes


def allowed_methods(url: str) -> set[str]:
    """What the view takes, from its JSON 405's ``Allow`` header."""
    response = Client().generic("TRACE", url)
    assert response.status_code == 405, (url, response.status_code)
    return {m.strip().lower() for m in response["Allow"].split(",")}


def test_every_route_is_described_with_its_methods() -> None:
    documented = documented_paths()
    routes = tasktrail_routes()
    assert set(routes) == set(documented), "docs/openapi.yaml paths differ from tasktrail.urls"
    for template, sample in routes.items():
        takes = allowed_methods(sample) - {"head"}  # HEAD rides along with GET
        assert documented[template] == takes, (template, documented[template], takes)


def test_bodies_have_the_documented_fields() -> None:
    run = RunData(id=str(uuid.uuid4()), task="t", status=Status.SUCCESSFUL, progress=Progress())
    body = {**run.as_json(), **run_urls(run.id), "result": None, "error": None}
    required, props = schema_properties("Run")
    assert set(body) == props
    assert required <= set(body)
    response = accepted(run, retry_of=str(uuid.uuid4()))
    body = json.loads(response.content)
    required, props = schema_properties("Accepted")
    assert set(body) == props
    assert required <= set(body)
    required, props = schema_properties("Progress")
    assert set(run.progress.as_json()) == props == required
    schemas = _block(_block(SPEC.read_text().splitlines(), "components:", 0), "schemas:", 2)
    [enum] = [line for line in _block(schemas, "Status:", 4) if "enum:" in line]
    assert enum.split("[", 1)[1].rstrip("]").split(", ") == list(Status.values)
