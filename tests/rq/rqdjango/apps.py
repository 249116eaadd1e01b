from __future__ import annotations

from django.apps import AppConfig


class RQDjangoConfig(AppConfig):
    name = "rqdjango"

    def ready(self) -> None:
        # Where a project declares its rules and tasks: imported when Django starts, so
        # `manage.py rqworker` knows them.
        import rq_django_rules  # noqa: F401
        from django.conf import settings

        import cachewire

        cachewire.configure(
            dispatcher_settings={"django_rq": {"QUEUE": settings.QUEUE}}, task_guard=settings.URL
        )
