"""``POST /api/v1/telemetry/backfill``: a store-and-forward upload of buffered telemetry, one event per line.

The body is NDJSON (``application/x-ndjson``), up to ``TELEMETRY_BACKFILL_MAX_LINES``
lines and ``TELEMETRY_BACKFILL_MAX_BODY_BYTES`` bytes, and is never held in memory:

1. the path is a streamed path (``tms_console.body_limits``), so neither server
   buffers the body in memory (daphne hands over the file it received the body
   into, gunicorn the socket's input; ``request_body.body_stream``);
2. the view copies the body, 64 kB at a time, to a spooled temporary file while
   counting its bytes and lines: past either limit the answer is 413 and
   nothing has been stored;
3. ``missions.telemetry.backfill`` reads that file line by line and stores the
   events in chunks of ``max_batch_events``, writing each line's answer to a
   second spooled file;
4. the answer (``application/json``: the counts, the gaps filled, then one
   result per line) is streamed from that file with its ``Content-Length``.

Authentication, the ``telemetry:write`` scope, the per-client rate limit and
problem documents are the partner API's, as on ``/telemetry/batch``. No
``Idempotency-Key``: the upload is idempotent by the events' ids (a resent
upload answers "duplicate" line by line), and a stored answer could be as large
as the upload. docs/decisions/0017-telemetry-backfill.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.request import Request

from missions.partner.api.serializers import ProblemSerializer
from missions.partner.api.views import PartnerView, problems
from missions.telemetry.backfill import MAX_LINE_BYTES, BackfillOutcome, LineResult, telemetry_backfill
from tms_console.body_limits import streamed_body_register
from tms_console.problem import PROBLEM_CONTENT_TYPE, ProblemError
from tms_console.request_body import READ_CHUNK_BYTES, body_stream

BACKFILL_PATH = "/api/v1/telemetry/backfill"
MEDIA_TYPE = "application/x-ndjson"
# What a spooled file keeps in memory before it moves to disk.
SPOOL_MEMORY_BYTES = 1_048_576


def backfill_max_body_bytes() -> int:
    return int(settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES)


def backfill_max_lines() -> int:
    return int(settings.TELEMETRY_BACKFILL_MAX_LINES)


def register() -> None:
    """The servers and the API's 413 check give this path its own limit and never buffer its body."""
    streamed_body_register(BACKFILL_PATH, backfill_max_body_bytes)


# --- Schema --------------------------------------------------------------------------------------


class BackfillLineSerializer(serializers.Serializer[dict[str, Any]]):
    """The outcome of one line: stored now, stored before, or refused with a problem document."""

    line = serializers.IntegerField(min_value=1, help_text="The line's number in the body, counting from 1")
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "refused"])
    event_id = serializers.CharField(
        required=False, help_text="Accepted and duplicate lines: the event's `event_id`, as sent"
    )
    problem = ProblemSerializer(required=False, help_text="Refused lines: why (RFC 9457 members)")


class BackfilledGapSerializer(serializers.Serializer[dict[str, Any]]):
    """A lost-comms gap the upload filled: no silence as long as its threshold is left in it."""

    gap_id = serializers.IntegerField()
    mission_id = serializers.IntegerField()
    silence_start = serializers.DateTimeField()
    silence_end = serializers.DateTimeField()
    gap_seconds = serializers.IntegerField()


class BackfillResultSerializer(serializers.Serializer[dict[str, Any]]):
    """Counts, the gaps filled, and one result per non-blank line in the order of the body."""

    lines = serializers.IntegerField(help_text="Non-blank lines read")
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    refused = serializers.IntegerField()
    gaps_backfilled = BackfilledGapSerializer(many=True)
    results = BackfillLineSerializer(many=True)


BACKFILL_REQUEST = {
    MEDIA_TYPE: {
        "type": "array",
        "items": {"$ref": "#/components/schemas/TelemetryBatchItem"},
        "minItems": 1,
        "maxItems": settings.TELEMETRY_BACKFILL_MAX_LINES,
        "description": "NDJSON: one TelemetryEvent per line (UTF-8, lines separated by LF or CRLF; blank lines "
        "are skipped). Each line is judged on its own; a line that is not an event is refused alone. At most "
        "`limits.max_backfill_lines` lines, `limits.max_backfill_body_bytes` bytes, and "
        f"`telemetry.backfill.max_line_bytes` ({MAX_LINE_BYTES}) bytes per line.",
    }
}
EXAMPLE_ANSWER = {
    "lines": 3,
    "accepted": 1,
    "duplicates": 1,
    "refused": 1,
    "gaps_backfilled": [
        {
            "gap_id": 7,
            "mission_id": 42,
            "silence_start": "2026-11-26T05:10:00Z",
            "silence_end": "2026-11-26T05:40:00Z",
            "gap_seconds": 60,
        }
    ],
    "results": [
        {"line": 1, "status": "accepted", "event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
        {"line": 2, "status": "duplicate", "event_id": "6fa459ea-ee8a-3ca4-894e-db77e160355e"},
        {
            "line": 3,
            "status": "refused",
            "problem": {
                "type": "/api/v1/problems/malformed-request",
                "title": "Bad Request",
                "status": 400,
                "detail": "The line is not JSON: unexpected end of data: line 1 column 12 (char 11)",
            },
        },
    ],
}


# --- The view ------------------------------------------------------------------------------------


class TelemetryBackfillView(PartnerView):
    """Store-and-forward telemetry: up to ``max_backfill_lines`` events as NDJSON, answered line by line."""

    required_scopes = {"POST": "telemetry:write"}

    @extend_schema(
        operation_id="telemetry_backfill",
        request=BACKFILL_REQUEST,
        responses={
            200: OpenApiResponse(
                BackfillResultSerializer,
                description="Every line judged: stored now (`accepted`), stored before (`duplicate`) or `refused`, "
                "in the order of the body; the lost-comms gaps the stored events filled.",
                examples=[OpenApiExample("An upload of three lines", value=EXAMPLE_ANSWER)],
            ),
            (400, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description="The body holds no line (`validation-error`). A line that is not JSON or not a valid "
                "event is not a 400: it is refused on its own in `results`.",
            ),
            (413, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description="The body is over `limits.max_backfill_body_bytes` (`body-too-large`) or holds more "
                "than `limits.max_backfill_lines` lines (`batch-too-large`). Nothing was stored.",
            ),
            (415, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer,
                description=f"The body is not `{MEDIA_TYPE}` in UTF-8, or it has a `Content-Encoding`.",
            ),
            **problems(401, 403, 429),
        },
    )
    def post(self, request: Request) -> StreamingHttpResponse:
        _media_type_check(request)
        spool = _body_spool(request)
        try:
            results = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, mode="w+b")  # noqa: SIM115
            writer = _ResultWriter(results)
            outcome = telemetry_backfill(carrier=self.carrier, stream=spool, on_result=writer.write)
        finally:
            spool.close()
        if not outcome.lines:
            results.close()
            raise ProblemError(
                400,
                "validation-error",
                "The body holds no lines: send one telemetry event per line.",
                errors=[{"pointer": "", "detail": "At least one line is required.", "code": "required"}],
            )
        return _answer(request, outcome, results, writer.size)


def _media_type_check(request: Request) -> None:
    django_request = request._request
    media_type = (django_request.content_type or "").strip().lower()
    charset = (django_request.content_params or {}).get("charset", "utf-8").strip().lower()
    encoding = django_request.META.get("HTTP_CONTENT_ENCODING", "identity").strip().lower() or "identity"
    if media_type != MEDIA_TYPE or charset.replace("_", "-") not in ("utf-8", "utf8") or encoding != "identity":
        raise UnsupportedMediaType(
            django_request.META.get("CONTENT_TYPE", ""),
            detail=f"Send {MEDIA_TYPE} in UTF-8, without a Content-Encoding: one telemetry event per line.",
        )


def _body_spool(request: Request) -> IO[bytes]:
    """The body copied to a spooled file, its bytes and lines counted on the way; 413 past either limit.

    Counting first means an upload over a limit stores nothing: no line is judged before the whole
    body is known to fit.
    """
    max_bytes, max_lines = backfill_max_body_bytes(), backfill_max_lines()
    stream = body_stream(request._request)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, mode="w+b")  # noqa: SIM115
    size = lines = 0
    last = b"\n"
    try:
        while chunk := stream.read(min(READ_CHUNK_BYTES, max_bytes + 1 - size)):
            size += len(chunk)
            if size > max_bytes:
                raise ProblemError(
                    413,
                    "body-too-large",
                    f"The request body passed the limit of {max_bytes} bytes; the rest was not read and "
                    "nothing was stored.",
                    max_body_bytes=max_bytes,
                )
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            if lines > max_lines:
                raise _too_many_lines(max_lines)
            spool.write(chunk)
        if last != b"\n":
            lines += 1  # the last line has no line break
        if lines > max_lines:
            raise _too_many_lines(max_lines)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _too_many_lines(max_lines: int) -> ProblemError:
    return ProblemError(
        413,
        "batch-too-large",
        f"An upload holds at most {max_lines} lines; nothing was stored. Split it and send the parts.",
        max_backfill_lines=max_lines,
    )


class _ResultWriter:
    """Line results as the comma-separated members of a JSON array, written to a file as they come."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.size = 0

    def write(self, result: LineResult) -> None:
        data = orjson.dumps(result)
        if self.size:
            data = b"," + data
        self.out.write(data)
        self.size += len(data)


def _answer(request: Request, outcome: BackfillOutcome, results: IO[bytes], results_size: int) -> StreamingHttpResponse:
    summary = {
        "lines": outcome.lines,
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "refused": outcome.refused,
        "gaps_backfilled": outcome.gaps_answer(),
    }
    head = orjson.dumps(summary)[:-1] + b',"results":['
    tail = b"]}"
    results.seek(0)
    # Under ASGI the answer must be an asynchronous iterator: Django would otherwise read a
    # synchronous one into a list first, the whole answer in memory.
    content: Iterator[bytes] | AsyncIterator[bytes]
    if isinstance(request._request, ASGIRequest):
        content = _pieces_async(head, results, tail)
    else:
        content = _pieces(head, results, tail)
    response = StreamingHttpResponse(content, status=200, content_type="application/json")
    response["Content-Length"] = str(len(head) + results_size + len(tail))
    return response


def _pieces(head: bytes, results: IO[bytes], tail: bytes) -> Iterator[bytes]:
    try:
        yield head
        while piece := results.read(READ_CHUNK_BYTES):
            yield piece
        yield tail
    finally:
        results.close()


async def _pieces_async(head: bytes, results: IO[bytes], tail: bytes) -> AsyncIterator[bytes]:
    # Reads from a local temporary file (a few megabytes at most), in the page cache: not worth a thread hop.
    try:
        yield head
        while piece := results.read(READ_CHUNK_BYTES):
            yield piece
        yield tail
    finally:
        results.close()
