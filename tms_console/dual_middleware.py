"""Middleware that runs in the server's own mode: a plain call under WSGI, a coroutine under ASGI.

Django runs a sync-only middleware under an ASGI handler by adapting around it:
the middleware runs in a thread (``sync_to_async``) and calls the rest of the
chain back on the event loop through ``async_to_sync``, waiting in that thread
for the loop to answer. When daphne stopped its loop on SIGTERM while a request
was inside such a middleware, the thread waited for an answer that never came,
and the interpreter, which joins those threads on exit, never exited.

So every middleware in ``settings.MIDDLEWARE`` is sync- and async-capable
(Django's ``sync_capable`` / ``async_capable`` and ``markcoroutinefunction``
pattern): under Django's own ASGI handler the chain is all coroutines, with no
adapter in it, and what a middleware does with the database or the shared
store goes through ``sync_to_async``, whose thread hands its result back to
the loop and never waits on it. daphne itself runs the chain in its sync mode,
view included, in one worker thread per request (``tms_console.asgi_http``):
no adapter there either, and a third of the CPU per request that the
coroutine chain costs. ``tests/tms_console/test_middleware_modes.py`` checks
both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase


class DualModeMiddleware:
    """Base for a middleware with a sync body (``call``) and an async one (``acall``).

    Django gives the middleware the next handler in the server's mode; the
    instance marks itself a coroutine function when that handler is one, and
    ``__call__`` then returns ``acall``'s coroutine.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.acall(request)
        return self.call(request)

    def respond(self, request: HttpRequest) -> HttpResponseBase:
        """The rest of the chain, synchronously (``call`` only)."""
        return cast("HttpResponseBase", self.get_response(request))

    async def arespond(self, request: HttpRequest) -> HttpResponseBase:
        """The rest of the chain, awaited (``acall`` only)."""
        return await cast("Callable[[HttpRequest], Awaitable[HttpResponseBase]]", self.get_response)(request)

    def call(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError
