"""The Content-Security-Policy header on every response the console sends.

The policy allows scripts, styles, images, fonts and fetch/WebSocket
connections from the console's own origin only (images also as ``data:``
URLs, which Swagger UI draws its icons with and which cannot run script), and
no inline code: the templates keep their scripts and styles in ``static/``
(decision record 0019 gives each directive and its reason). Three narrow
exceptions:

* ``style-src`` allows the hash of the *empty* style sheet. Plotly adds an
  empty ``<style>`` element to the page and fills it through the CSSOM
  (``insertRule``), which CSP does not govern; allowing exactly the empty
  text lets that element through without allowing any inline CSS.
* ``style-src`` allows the hash of one more exact text: the maplibre-gl style
  sheet that the vendored ``plotly.min.js`` writes into the page as it loads
  (for its tile-map traces). A hash allows those bytes and nothing else; the
  tests recompute it from the vendored file, so a plotly upgrade that changes
  the sheet fails them with the new value instead of failing in the browser.
* a page whose template asks for ``request.csp_nonce`` (the partner API's
  Swagger page, whose start-up script carries values rendered per request)
  gets a fresh nonce in ``script-src``; pages that never ask get none.

Works the same under WSGI and ASGI: the middleware is sync- and
async-capable, so an async stack around it never needs a thread hop for it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Final

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

HEADER: Final = "Content-Security-Policy"
NONCE_ATTRIBUTE: Final = "csp_nonce"


def _sha256_source(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


EMPTY_STYLE_HASH: Final = _sha256_source("")
# The maplibre-gl sheet inside static/vendor/plotly/plotly.min.js (plotly.js 4.1.1).
PLOTLY_MAPLIBRE_STYLE_HASH: Final = "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='"

# Directive -> sources, in the order they are sent. Reasons in docs/decisions/0019-content-security-policy.md.
POLICY: Final[dict[str, tuple[str, ...]]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'", EMPTY_STYLE_HASH, PLOTLY_MAPLIBRE_STYLE_HASH),
    "img-src": ("'self'", "data:"),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}


def policy_header(*, nonce: str | None = None) -> str:
    """The header's value; with ``nonce``, scripts carrying it may run too."""
    parts = []
    for directive, sources in POLICY.items():
        if nonce is not None and directive == "script-src":
            sources = (*sources, f"'nonce-{nonce}'")
        parts.append(" ".join((directive, *sources)))
    return "; ".join(parts)


_STATIC_HEADER: Final = policy_header()


class Nonce:
    """A per-request nonce that comes into being only when a template renders it."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = secrets.token_urlsafe(18)
        return self._value

    @property
    def used(self) -> str | None:
        """The nonce if a template asked for it, else None."""
        return self._value


class ContentSecurityPolicyMiddleware:
    """Adds the policy to every response that does not carry one already (a view may set its own)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self._async:
            return self._acall(request)
        nonce = Nonce()
        setattr(request, NONCE_ATTRIBUTE, nonce)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)  # the sync chain never answers an awaitable
        return _with_policy(response, nonce)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        nonce = Nonce()
        setattr(request, NONCE_ATTRIBUTE, nonce)
        response = self.get_response(request)
        assert not isinstance(response, HttpResponseBase)  # the async chain always answers an awaitable
        return _with_policy(await response, nonce)


def _with_policy(response: HttpResponseBase, nonce: Nonce) -> HttpResponseBase:
    if HEADER not in response:
        used = nonce.used
        response[HEADER] = _STATIC_HEADER if used is None else policy_header(nonce=used)
    return response
