"""Helpers shared by the console pages of every app: pagination, running a service call, form errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from tms_console.domain import DomainError

PAGE_SIZE = 25


def paginate(request: HttpRequest, queryset: QuerySet[Any], per_page: int = PAGE_SIZE) -> Page[Any]:
    """One page of ``queryset``; an out-of-range or junk ``?page=`` gives the nearest valid page."""
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def run_action(request: HttpRequest, action: Callable[[], Any], success: str) -> bool:
    """Run a service call; a domain refusal becomes an error message and nothing changes."""
    try:
        action()
    except DomainError as exc:
        messages.error(request, exc.message)
        return False
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return False
    messages.success(request, success)
    return True


def form_errors_message(request: HttpRequest, form: Any) -> None:
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else ""
        for error in errors:
            messages.error(request, f"{label}: {error}" if label else str(error))


def last_event_id(events: Iterable[Model]) -> int:
    """The newest id among the events a page shows (where its live updates start), 0 for none."""
    ids = [e.pk for e in events]
    return max(ids) if ids else 0
