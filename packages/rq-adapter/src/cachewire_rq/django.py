"""The ``django_rq`` dispatcher: queues from `django_rq.get_queue`, configured by ``RQ_QUEUES``.

Needs the ``django`` extra (``pip install "cachewire-rq[django]"``). Workers run
``python manage.py rqworker --serializer rq.serializers.JSONSerializer <queue>``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from rq import Queue
from rq.serializers import JSONSerializer

from cachewire import register_dispatcher
from cachewire.errors import ConfigurationError
from cachewire_rq._dispatcher import BaseRQDispatcher
from cachewire_rq._jobs import perform

__all__ = ["DjangoRQDispatcher", "run_job"]


@register_dispatcher
class DjangoRQDispatcher(BaseRQDispatcher):
    """Enqueues on the queues django-rq's ``RQ_QUEUES`` defines."""

    name = "django_rq"
    default_function_path: ClassVar[str] = "cachewire_rq.django.run_job"

    def queue_key(self, name: str) -> Any:
        # Built again when RQ_QUEUES changes (override_settings in tests).
        return (name, repr(getattr(settings, "RQ_QUEUES", {}).get(name)))

    def make_queue(self, name: str) -> Queue:
        known = getattr(settings, "RQ_QUEUES", {})
        if name not in known:
            raise ConfigurationError(
                f"the 'django_rq' dispatcher's queue {name!r} is not in RQ_QUEUES "
                f"(defined: {sorted(known)}); add it there or set another QUEUE"
            )
        import django_rq  # reads Django's settings when imported

        return django_rq.get_queue(name, serializer=JSONSerializer)


def run_job(body: str) -> Any:
    """The default ``function_path`` of the ``django_rq`` dispatcher."""
    return perform(body, dispatcher_name="django_rq")
