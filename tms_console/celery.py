"""The Celery app. Request and correlation ids travel in task headers."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from tms_console.logging import correlation_id_var, request_id_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")

app = Celery("tms_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.before_task_publish.connect
def _attach_ids(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault("request_id", request_id_var.get())
        headers.setdefault("correlation_id", correlation_id_var.get())


@signals.task_prerun.connect
def _restore_ids(task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    if request is None:
        return
    request_id_var.set(getattr(request, "request_id", None))
    correlation_id_var.set(getattr(request, "correlation_id", None))
