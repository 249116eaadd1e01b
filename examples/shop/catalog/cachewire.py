"""The catalogue's cached data, and the rules that keep it correct.

cachewire_django imports this module at startup (like ``admin.py``), in web processes and workers.
"""

from __future__ import annotations

from typing import Any

from cachewire import Rule, cached

from .models import Category, Product


@cached(
    ttl=600,
    partition=["category_id"],
    invalidates_on=[
        # A product saved or deleted: its category's listing (both, when it moves).
        Rule(model=Product, field_mapping={"category_id": "category_id"}),
        # The category itself renamed.
        Rule(model=Category, field_mapping={"category_id": "id"}),
    ],
)
def category_listing(category_id: int) -> dict[str, Any]:
    category = Category.objects.get(pk=category_id)
    products = category.products.order_by("name")
    return {
        "category": category.name,
        "products": [
            {"id": p.pk, "name": p.name, "price": str(p.price), "in_stock": p.in_stock}
            for p in products
        ],
    }


@cached(
    ttl=600,
    partition=["product_id"],
    invalidates_on=[Rule(model=Product, field_mapping={"product_id": "id"})],
)
def product_card(product_id: int) -> dict[str, Any]:
    product = Product.objects.select_related("category").get(pk=product_id)
    return {
        "id": product.pk,
        "name": product.name,
        "price": str(product.price),
        "category": product.category.name,
    }
