"""The durable queue app: ``"cachewire_django.queue"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class QueueConfig(AppConfig):
    name = "cachewire_django.queue"
    label = "cachewire_queue"
    verbose_name = "cachewire queue"
    default_auto_field = "django.db.models.BigAutoField"
