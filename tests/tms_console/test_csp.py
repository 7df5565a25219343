"""The Content-Security-Policy header: on every response, strict, a nonce only where asked; templates free of
inline code; the favicon served at the root before the sign-in gate.

The browser side (nothing blocked on any page, for any role) is tests/browser/test_console_pages.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from tests.conftest import verified_client
from tms_console import csp
from tms_console.csp import HEADER, ContentSecurityPolicyMiddleware, policy_header

BASE = Path(settings.BASE_DIR)
PLOTLY = BASE / "static" / "vendor" / "plotly" / "plotly.min.js"


def directives(value: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in value.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} given twice"
        parsed[name] = sources
    return parsed


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# --- The policy --------------------------------------------------------------------------------


def test_the_policy_allows_only_the_console_itself_and_no_inline_code() -> None:
    policy = directives(policy_header())
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"][0] == "'self'"
    assert all(s.startswith("'sha256-") for s in policy["style-src"][1:])  # exact texts only, see below
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]  # fetch and the live pages' WebSockets, same origin
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    every_source = [s for sources in policy.values() for s in sources]
    for loose in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "'strict-dynamic'", "*", "http:", "https:"):
        assert loose not in every_source, loose
    assert not [s for s in every_source if "://" in s], "no other origin is trusted"


def test_the_empty_style_hash_is_the_hash_of_nothing() -> None:
    assert sha256_source("") == csp.EMPTY_STYLE_HASH
    assert csp.EMPTY_STYLE_HASH == "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"


def test_the_plotly_style_hash_matches_the_sheet_the_vendored_plotly_writes() -> None:
    """Upgrading plotly.min.js changes this sheet: the test then names the hash to put in tms_console/csp.py."""
    bundle = PLOTLY.read_text(encoding="utf-8")
    sheets = re.findall(r"""createElement\("style"\)[;,]\w+\.id="[0-9a-f]+",\w+\.textContent='([^']*)'""", bundle)
    assert len(sheets) == 1, "expected one style sheet written as text by plotly.min.js"
    assert sheets[0].startswith(".maplibregl-map")
    assert sha256_source(sheets[0]) == csp.PLOTLY_MAPLIBRE_STYLE_HASH


def test_a_nonce_is_added_to_scripts_only() -> None:
    policy = directives(policy_header(nonce="abc123"))
    assert policy["script-src"] == ["'self'", "'nonce-abc123'"]
    assert directives(policy_header())["style-src"] == policy["style-src"]


# --- On every response --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/account/login/", 200),
        ("/shipments/", 302),  # anonymous: to the login page
        ("/healthz", 200),
        ("/api/v1/tenders", 401),  # problem+json from the partner API
        ("/no-such-page/", 302),
        ("/favicon.ico", 200),  # WhiteNoise, before everything else
    ],
)
def test_every_response_carries_the_policy(client: Client, db: Any, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response[HEADER] == policy_header()


def test_console_pages_403_and_404_carry_the_policy(dispatcher: User) -> None:
    client = verified_client(dispatcher)
    for path, status in (("/", 200), ("/map/", 200), ("/sla/dashboard/", 200), ("/partners/", 403), ("/nope/", 404)):
        response = client.get(path)
        assert response.status_code == status, path
        assert response[HEADER] == policy_header(), path


def test_the_api_docs_script_runs_under_a_fresh_nonce_per_response(client: Client, db: Any) -> None:
    nonces = []
    for _ in range(2):
        response = client.get("/api/v1/docs/")
        assert response.status_code == 200
        script_src = directives(response[HEADER])["script-src"]
        assert script_src[0] == "'self'" and len(script_src) == 2
        nonce = script_src[1].removeprefix("'nonce-").removesuffix("'")
        html = response.content.decode()
        assert html.count(f'<script nonce="{nonce}">') == 1
        assert "<style" not in html
        assert len(re.findall(r"<script(?![^>]*\bsrc=)", html)) == 1  # the nonce one, nothing else inline
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert len(nonces[0]) >= 22  # 128 bits and more


def test_a_response_with_its_own_policy_keeps_it() -> None:
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse("sandboxed")
        response[HEADER] = "sandbox"
        return response

    response = ContentSecurityPolicyMiddleware(view)(RequestFactory().get("/"))
    assert isinstance(response, HttpResponse)
    assert response[HEADER] == "sandbox"


async def test_the_middleware_runs_async_without_a_thread_hop() -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    middleware = ContentSecurityPolicyMiddleware(view)
    assert iscoroutinefunction(middleware)
    response = await middleware(RequestFactory().get("/"))  # type: ignore[misc]
    assert response[HEADER] == policy_header()


def test_the_middleware_runs_sync() -> None:
    middleware = ContentSecurityPolicyMiddleware(lambda request: HttpResponse("ok"))
    assert not iscoroutinefunction(middleware)
    response = middleware(RequestFactory().get("/"))
    assert isinstance(response, HttpResponse)
    assert response[HEADER] == policy_header()


def test_the_middleware_is_outermost() -> None:
    assert settings.MIDDLEWARE[0] == "tms_console.csp.ContentSecurityPolicyMiddleware"


# --- No inline code in the templates -------------------------------------------------------------

INLINE_CODE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*\bnonce=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"""\sstyle\s*=\s*["']""", re.I), "style attribute"),
    (re.compile(r"""\son[a-z]+\s*=\s*["']""", re.I), "event-handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_holds_inline_scripts_styles_or_event_handlers() -> None:
    found = []
    for template in sorted((BASE / "templates").rglob("*.html")):
        text = template.read_text(encoding="utf-8")
        for pattern, what in INLINE_CODE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{template.relative_to(BASE)}:{line}: {what}: {match.group(0)}")
    assert found == []


def test_the_inline_code_scan_finds_what_it_looks_for() -> None:
    samples = [
        "<script>alert(1)</script>",
        "<style>p{}</style>",
        '<span style="--c:#fff">',
        '<select onchange="this.form.submit()">',
        '<a href="javascript:void(0)">',
    ]
    for sample, (pattern, what) in zip(samples, INLINE_CODE, strict=True):
        assert pattern.search(sample), what
    for clean in ('<script src="/static/js/x.js" defer></script>', '<script nonce="{{ n }}">', "<p data-style='x'>"):
        assert not any(p.search(clean) for p, _ in INLINE_CODE), clean


# --- The favicon ---------------------------------------------------------------------------------


def test_the_favicon_is_served_at_the_root_to_anyone_without_the_sign_in_gate(client: Client, db: Any) -> None:
    """Chromium asks /favicon.ico for a page naming no icon; it used to be sent to the login page, and that GET
    reset a sign-in waiting for its code."""
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    assert body == (BASE / "static" / "root" / "favicon.ico").read_bytes()
    assert body[:4] == b"\x00\x00\x01\x00"  # an icon resource


def test_the_pages_name_the_vendored_svg_icon(client: Client, db: Any, dispatcher: User) -> None:
    assert (BASE / "static" / "favicon.svg").read_text().lstrip().startswith("<svg")
    for response in (client.get("/account/login/"), verified_client(dispatcher).get("/")):
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in response.content.decode()
