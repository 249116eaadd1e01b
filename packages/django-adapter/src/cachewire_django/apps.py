"""The Django app: ``"cachewire_django"`` in ``INSTALLED_APPS``."""

from __future__ import annotations

import importlib

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules


class CachewireConfig(AppConfig):
    """Reads ``CACHEWIRE``, imports each app's ``cachewire`` module (and ``MODULES``), and
    connects the model signals."""

    name = "cachewire_django"
    label = "cachewire"
    verbose_name = "cachewire"

    def ready(self) -> None:
        from cachewire_django import checks, conf, wiring

        conf.apply_settings()
        setting_changed.connect(conf.on_setting_changed, dispatch_uid="cachewire_django.settings")
        # Producers and workers import the same modules, so a worker knows every rule id.
        autodiscover_modules("cachewire")
        for module in conf.current().modules:
            importlib.import_module(module)
        wiring.rewire()
        checks.register()
