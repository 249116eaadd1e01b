from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("posts/<int:post_id>/", views.post_detail),
    path("aposts/<int:post_id>/", views.apost_detail),
    path("special/<str:kind>/", views.special),
]
