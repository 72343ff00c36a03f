"""Seed 002, "use chunking": 1,000 products revalued in chunks of 100, as a Celery group.

The view calls ``enqueue(group(revalue_chunk.s(...) for chunk in chunks), owner=...,
subject=batch.subject)``: every chunk is a tracked run of the group, about the batch's
subject ``batch:<uuid>``. No run coordinates the others (nor holds a worker slot while
they run): the batch's status is computed from its members' runs
(:class:`tasktrail.canvas.RunGroup`), and the page counts finished members on the
subject stream.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone

from tasktrail import feed, progress, tracked_task

from ..models import Batch, Product

# The (simulated) cost of revaluing one product: a price lookup, say.
ITEM_SECONDS = 0.01


def chunked(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


@tracked_task
def revalue_chunk(batch_id: int, number: int, product_ids: list[int]) -> dict[str, Any]:
    """Recompute ``stock_value`` of up to 100 products (chunk ``number``, from 1)."""
    products = list(Product.objects.filter(pk__in=product_ids))
    now = timezone.now()
    for i, product in enumerate(products, 1):
        time.sleep(ITEM_SECONDS)
        product.stock_value = product.price * max(product.stock, 0)
        product.revalued_at = now
        progress(i, len(products))
    Product.objects.bulk_update(products, ["stock_value", "revalued_at"])
    Batch.objects.filter(pk=batch_id).update(processed=F("processed") + len(products))
    total = sum((p.stock_value for p in products), Decimal(0))
    feed(f"Chunk {number}: revalued {len(products)} products", "success")
    return {"chunk": number, "products": len(products), "value": str(total)}
