"""``manage.py example_setup``: the demo user and the shop's data (idempotent)."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from example.shop.models import Product, Sale, Todo

PRODUCTS = 1_000
SALES = 2_000
SALES_DAYS = 120


class Command(BaseCommand):
    help = "Create a user (demo/demo by default) and the example shop's data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--staff", action="store_true", help="Make the user staff.")
        parser.add_argument("--no-data", action="store_true", help="Only the user.")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=options["user"], defaults={"email": f"{options['user']}@shop.example"}
        )
        user.set_password(options["password"])
        user.is_staff = bool(options["staff"])
        user.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} user {user.get_username()}")
        if not options["no_data"]:
            self._data(user)

    @transaction.atomic
    def _data(self, user: Any) -> None:
        rng = random.Random(42)
        existing = Product.objects.count()
        if existing < PRODUCTS:
            Product.objects.bulk_create(
                Product(
                    sku=f"SKU-{n:05d}",
                    name=f"Product {n}",
                    price=Decimal(rng.randint(100, 10_000)) / 100,
                    stock=rng.randint(0, 200),
                    threshold=rng.randint(3, 15),
                )
                for n in range(existing + 1, PRODUCTS + 1)
            )
        if not Sale.objects.exists():
            products = list(Product.objects.order_by("pk")[:200])
            now = timezone.now()
            sales = []
            for _ in range(SALES):
                product = rng.choice(products)
                quantity = rng.randint(1, 5)
                sales.append(
                    Sale(
                        product=product,
                        quantity=quantity,
                        amount=product.price * quantity,
                        sold_at=now - timedelta(minutes=rng.randint(0, SALES_DAYS * 24 * 60)),
                    )
                )
            Sale.objects.bulk_create(sales, batch_size=500)
        if not Todo.objects.filter(owner=user).exists():
            today = timezone.localdate()
            Todo.objects.bulk_create(
                [
                    Todo(owner=user, title="Renew the shop's insurance", due_date=today),
                    Todo(owner=user, title="Order oat milk", due_date=today + timedelta(days=1)),
                    Todo(owner=user, title="Plan the summer sale", due_date=today + timedelta(7)),
                    *(
                        Todo(
                            owner=user,
                            title=f"Old completed to-do {n}",
                            due_date=today - timedelta(days=200 + n),
                            status=Todo.State.COMPLETED,
                            completed_at=timezone.now() - timedelta(days=100 + n),
                        )
                        for n in range(3)
                    ),
                ]
            )
        self.stdout.write(
            f"{Product.objects.count()} products, {Sale.objects.count()} sales, "
            f"{Todo.objects.count()} to-dos"
        )
