"""The app's startup: auth signals and tracked models are wired once the registry is ready."""

from __future__ import annotations

from django.apps import AppConfig


class SealogConfig(AppConfig):
    name = "sealog.integrations.django"
    label = "sealog"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from . import conf, signals, tracking

        signals.connect()
        tracking.install(conf.tracked_labels())
        conf.watch_settings()
