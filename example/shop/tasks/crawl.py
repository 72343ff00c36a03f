"""Seed 000: a resource crawl with a live feed on the resource's channel ``crawl:<uuid>``.

The crawler is real: it follows same-site links breadth-first with a politeness
delay and reports every page as a feed line (info), redirects (warning), broken
links (error) and the summary (success). The example crawls its own site.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import deque
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from django.utils import timezone

from tasktrail import feed, progress, tracked_task

from ..models import Resource

TIMEOUT = 5.0


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # report redirects instead of following them


_opener = urllib.request.build_opener(_NoRedirect)


def fetch(url: str) -> tuple[int, str, str]:
    """``(status, location, html)`` of one GET; HTTP errors are statuses, not exceptions."""
    request = urllib.request.Request(url, headers={"User-Agent": "tasktrail-example-crawler"})
    try:
        with _opener.open(request, timeout=TIMEOUT) as response:
            return response.status, "", response.read(1_000_000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), ""


def same_site_links(base: str, html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    site = urlsplit(base).netloc
    links = []
    for href in parser.hrefs:
        url = urldefrag(urljoin(base, href)).url
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc == site:
            links.append(url)
    return links


@tracked_task(max_retries=1)
def crawl_resource(resource_id: int) -> dict[str, Any]:
    """Crawl up to ``max_pages`` pages of the resource's site."""
    resource = Resource.objects.get(pk=resource_id)
    feed(f"Crawling {resource.url} (at most {resource.max_pages} pages)")
    queue, seen = deque([resource.url]), {resource.url}
    pages = broken = 0
    while queue and pages < resource.max_pages:
        url = queue.popleft()
        path = urlsplit(url).path or "/"
        try:
            status, location, html = fetch(url)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            feed(f"{path}: unreachable ({exc})", "error")
            broken += 1
            continue
        pages += 1
        if status >= 400:
            broken += 1
            feed(f"{status} {path}: broken link", "error")
        elif 300 <= status < 400:
            feed(f"{status} {path} -> {urlsplit(location).path or location}", "warning")
        else:
            links = [link for link in same_site_links(url, html) if link not in seen]
            seen.update(links)
            queue.extend(links)
            feed(f"{status} {path}: {len(links)} new links")
        progress(pages, resource.max_pages, path)
        time.sleep(resource.delay)
    Resource.objects.filter(pk=resource.pk).update(
        pages_found=pages, broken_links=broken, last_crawled_at=timezone.now()
    )
    progress(resource.max_pages, resource.max_pages, "Crawl finished")
    feed(f"Crawl finished: {pages} pages, {broken} broken links", "success")
    return {"pages": pages, "broken_links": broken, "queued_unvisited": len(queue)}
