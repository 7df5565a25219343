"""Every middleware runs in the server's own mode: nothing between daphne and the views waits on the loop.

A sync-only middleware under ASGI makes Django run it in a thread that calls the
rest of the chain back on the event loop and waits there; when daphne stops its
loop on SIGTERM with a request in that thread, the process never exits
(``tms_console.dual_middleware``). These tests check that Django's ASGI handler
builds the coroutine chain without any adapter, that each project middleware
does its job when called as a coroutine, and that daphne's handler
(``tms_console.asgi_http``) runs the sync chain in one thread with no adapter
either (the sync mode is what the rest of the suite's test client exercises).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, AsyncRequestFactory, override_settings
from django.utils.module_loading import import_string

from tms_console import metrics
from tms_console.asgi_http import OneThreadASGIHandler
from tms_console.middleware import StaticFilesMiddleware

pytestmark = pytest.mark.django_db(transaction=True)


class SyncOnlyMiddleware:
    """What the project's middleware were before: callable, but neither flag set."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)


def adaptations(caplog: pytest.LogCaptureFixture, handler_class: type[ASGIHandler] = ASGIHandler) -> list[str]:
    """What Django had to adapt while building the handler's chain."""
    caplog.clear()
    # Django names what it adapts on this logger while DEBUG is on.
    with caplog.at_level(logging.DEBUG, logger="django.request"), override_settings(DEBUG=True):
        handler_class()
    return [r.getMessage() for r in caplog.records if "adapted for" in r.getMessage()]


def test_every_middleware_is_sync_and_async_capable() -> None:
    for path in settings.MIDDLEWARE:
        middleware = import_string(path)
        assert getattr(middleware, "sync_capable", True), path
        assert getattr(middleware, "async_capable", False), path


def test_djangos_asgi_chain_has_no_adapter(caplog: pytest.LogCaptureFixture) -> None:
    assert adaptations(caplog) == []
    # The check would see one: a sync-only middleware in the list is adapted around.
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, f"{__name__}.SyncOnlyMiddleware"]):
        assert adaptations(caplog)


def test_daphnes_handler_runs_the_sync_chain_with_no_adapter(caplog: pytest.LogCaptureFixture) -> None:
    assert adaptations(caplog, OneThreadASGIHandler) == []
    handler = OneThreadASGIHandler()
    assert not iscoroutinefunction(handler._middleware_chain)
    from tms_console.asgi import django_asgi_app

    assert isinstance(django_asgi_app, OneThreadASGIHandler)


async def test_daphnes_handler_serves_a_request_through_the_whole_chain() -> None:
    communicator = ApplicationCommunicator(
        OneThreadASGIHandler(),
        {
            "type": "http",
            "method": "GET",
            "path": "/healthz",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"x-request-id", b"one-thread-1")],
        },
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=10)
    body = await communicator.receive_output(timeout=10)
    assert start["status"] == 200 and (b"X-Request-ID", b"one-thread-1") in start["headers"]
    assert json.loads(body["body"])["status"] == "ok"


async def test_under_asgi_the_middleware_do_their_work() -> None:
    client = AsyncClient()
    before = metrics.HTTP_REQUESTS.labels("/healthz", "GET", "2xx")._value.get()
    health = await client.get("/healthz", headers={"X-Request-ID": "asgi-probe-1"})
    assert health.status_code == 200
    assert health["X-Request-ID"] == "asgi-probe-1"  # RequestIdMiddleware
    assert metrics.HTTP_REQUESTS.labels("/healthz", "GET", "2xx")._value.get() == before + 1  # MetricsMiddleware
    # The two-factor gate reads the session and the user (the database) in a thread.
    page = await client.get("/missions/")
    assert page.status_code == 302 and "/account/login/" in page["Location"]
    closed = await client.get("/account/two_factor/disable/")
    assert closed.status_code == 404
    # Under /api/: a problem document, never cached, with the rate-limit fields read from the store.
    missing = await client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing["Content-Type"].startswith("application/problem+json")
    assert missing["Cache-Control"] == "no-store"
    assert "RateLimit-Policy" in missing
    too_large = await client.post(
        "/api/v1/telemetry/batch", data=b" " * (settings.API_MAX_BODY_BYTES + 1), content_type="application/json"
    )
    assert too_large.status_code == 413 and too_large.json()["type"].endswith("/body-too-large")


@pytest.mark.parametrize("autorefresh", [True, False])
async def test_static_files_are_served_as_a_coroutine(autorefresh: bool) -> None:
    async def rest_of_chain(request: HttpRequest) -> HttpResponse:
        return HttpResponse("not a static file", status=418)

    with override_settings(WHITENOISE_AUTOREFRESH=autorefresh, WHITENOISE_USE_FINDERS=True):
        middleware = StaticFilesMiddleware(rest_of_chain)
    assert iscoroutinefunction(middleware)
    factory = AsyncRequestFactory()
    served = await middleware(factory.get("/static/css/console.css"))
    assert served.status_code == 200 and served["Content-Type"].startswith("text/css")
    assert b"".join([chunk async for chunk in served]).strip()
    passed = await middleware(factory.get("/missions/"))
    assert passed.status_code == 418
