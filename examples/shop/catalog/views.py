"""A JSON API: one view over a cached function, one whole-response cached view."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from cachewire import Rule
from cachewire_django import cache_view

from .cachewire import category_listing, product_card
from .models import Product


def product(request: HttpRequest, product_id: int) -> HttpResponse:
    return JsonResponse(product_card(product_id))


@cache_view(
    ttl=300,
    partition=["category_id"],
    invalidates_on=[Rule(model=Product, field_mapping={"category_id": "category_id"})],
)
def category(request: HttpRequest, category_id: int) -> HttpResponse:
    listing = category_listing(category_id)
    if request.GET.get("in_stock") == "1":
        listing = {**listing, "products": [p for p in listing["products"] if p["in_stock"]]}
    return JsonResponse(listing)
