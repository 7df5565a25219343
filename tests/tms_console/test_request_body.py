"""The WSGI body limit: chunked bodies handed on with their length, bodies over the limit refused while read."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tms_console.request_body import BodyLimitWSGI, body_limit, is_chunked, path_of_target, read_limited


class CountingStream(io.BytesIO):
    """A request body that counts what was read from it."""

    read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


class Echo:
    """An application that answers with the body and length it was given."""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or "0"
        length = int(declared) if declared.isdigit() else 0
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"length": length, "body": body.decode()}).encode()]


def call(environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(BodyLimitWSGI(Echo())(environ, start_response))
    return captured["status"], captured["headers"], body


def environ_for(path: str, stream: io.BytesIO, **extra: Any) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "wsgi.input": stream, **extra}


def test_a_chunked_body_reaches_the_application_with_its_length() -> None:
    stream = CountingStream(b'{"kind": "accept"}')
    environ = environ_for("/api/v1/x", stream, HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    status, _, body = call(environ)
    assert status == 200
    assert json.loads(body) == {"length": 18, "body": '{"kind": "accept"}'}


def test_a_chunked_body_over_the_limit_is_refused_after_one_byte_past_it(settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 1000
    stream = CountingStream(b"x" * 50_000)
    environ = environ_for("/api/v1/x", stream, HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    status, headers, body = call(environ)
    assert status == 413
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["type"], problem["max_body_bytes"]) == ("/api/v1/problems/body-too-large", 1000)
    assert stream.read_bytes == 1001  # nothing read, let alone kept, beyond the first byte past the limit


def test_a_declared_length_over_the_limit_is_refused_unread(settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 1000
    stream = CountingStream(b"x" * 5000)
    status, _, body = call(environ_for("/api/v1/x", stream, CONTENT_LENGTH="5000"))
    assert status == 413 and json.loads(body)["detail"] == "The request body is 5000 bytes; the limit is 1000."
    assert stream.read_bytes == 0


def test_a_server_that_does_not_terminate_its_input_is_left_alone() -> None:
    # PEP 3333: reading past CONTENT_LENGTH may block forever on such a server.
    stream = CountingStream(b"abc")
    status, _, body = call(environ_for("/api/v1/x", stream, HTTP_TRANSFER_ENCODING="chunked"))
    assert (status, json.loads(body)["length"], stream.read_bytes) == (200, 0, 0)


def test_limits_and_helpers(settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5000
    assert body_limit("/api/v1/telemetry") == body_limit("/oauth2/token") == 1000
    assert body_limit("/sla/") == 5000
    assert path_of_target(b"/api/v1/x?y=1") == "/api/v1/x"
    assert path_of_target(b"http://host:8000/%61pi/v1") == "/api/v1"
    assert is_chunked("gzip, chunked") and not is_chunked("identity")
    assert read_limited(io.BytesIO(b"abc"), 3) == b"abc"
    assert read_limited(io.BytesIO(b"abcd"), 3) is None


@pytest.mark.parametrize("declared", ["12x", "-"])
def test_a_malformed_length_is_left_to_django(declared: str) -> None:
    status, _, _ = call(environ_for("/api/v1/x", CountingStream(b""), CONTENT_LENGTH=declared))
    assert status == 200  # Echo stands in for Django, which answers 400 (ApiProblemMiddleware)
