from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("products/<int:product_id>/", views.product),
    path("categories/<int:category_id>/", views.category),
]
