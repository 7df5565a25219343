"""Store-and-forward telemetry: an NDJSON upload of buffered events, stored in chunks and answered line by line.

A vehicle that lost its uplink keeps its telemetry and uploads it once the link
is back, one normalized event per line (``application/x-ndjson``, the same
event as in a batch). ``telemetry_backfill`` reads the lines one at a time from
a file (the view has spooled the body there, under its limit), hands the events
to the ingest pipeline ``telemetry_batch_max()`` at a time (one transaction per
chunk: validated, ownership-checked, deduped on the event id, written by COPY),
and reports every line, in order, to ``on_result``: accepted, duplicate, or
refused with a problem document (RFC 9457 members) saying why. Memory holds one
chunk, whatever the number of lines. A bad line (not JSON, too long, an
unstorable string, another carrier's mission) is refused alone; the lines
around it are stored.

Events already stored are duplicates, also past the window's dedupe horizon
when they are their second's long-term sample (``ingest_events(samples_dedupe=True)``),
so an upload sent again stores nothing twice. Last, the resumed telemetry gaps
the stored events fall into are marked backfilled when they are filled
(``gaps.telemetry_gaps_backfill``). See docs/decisions/0017-telemetry-backfill.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from missions.models import Carrier
from missions.models.telemetry import TelemetryGap
from missions.telemetry.admission import batch_admission
from missions.telemetry.gaps import telemetry_gaps_backfill
from missions.telemetry.ingest import MissionCache, ingest_events, telemetry_batch_max
from tms_console.problem import problem_body
from tms_console.unstorable import json_parse

log = logging.getLogger(__name__)

SOURCE = "api-backfill"
# Longest line read (without its line break). An event is well under 4 kB; a longer line is
# refused unread, so one endless line never fills memory.
MAX_LINE_BYTES = 65_536

LineResult = dict[str, Any]


@dataclass
class BackfillOutcome:
    """What an upload did: counts per outcome, the gaps it filled and the span it covered per mission."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0
    gaps: list[TelemetryGap] = field(default_factory=list)
    # mission id -> (earliest, latest) timestamp of the lines stored, now or before.
    spans: dict[int, tuple[datetime, datetime]] = field(default_factory=dict)

    def gaps_answer(self) -> list[dict[str, Any]]:
        return [
            {
                "gap_id": gap.pk,
                "mission_id": gap.mission_id,
                "silence_start": _iso(gap.last_seen_at),
                "silence_end": _iso(gap.resumed_seen_at),
                "gap_seconds": gap.gap_seconds,
            }
            for gap in self.gaps
        ]


def ndjson_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) for every line that is not blank; None for a line over ``MAX_LINE_BYTES``.

    Numbers count every line from 1, blank ones included, so they match the sender's
    file. A too-long line is skipped in pieces, never held whole.
    """
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        text = line.strip()
        if text:
            yield number, text


def line_parse(line: bytes) -> tuple[Any, LineResult | None]:
    """The line's JSON value, or the problem that refuses it.

    orjson refuses a lone surrogate (escaped or as raw bytes); such a line is JSON all the
    same, parsed again by ``json_parse`` so the normalizer names the field that holds it.
    """
    try:
        return orjson.loads(line), None
    except orjson.JSONDecodeError as exc:
        try:
            return json_parse(line), None
        except (ValueError, RecursionError):
            return None, _problem(400, "malformed-request", f"The line is not JSON: {exc}")


def telemetry_backfill(
    *, carrier: Carrier, stream: IO[bytes], on_result: Callable[[LineResult], None]
) -> BackfillOutcome:
    """Store the events of an NDJSON upload; ``on_result`` gets one answer per non-blank line, in order."""
    outcome = BackfillOutcome()
    cache = MissionCache()
    chunk = telemetry_batch_max()
    # The lines since the last flush: (number, parsed event) waiting for the ingest, or (number, answer).
    pending: list[tuple[int, Any, LineResult | None]] = []
    events = 0
    for number, line in ndjson_lines(stream):
        outcome.lines += 1
        if line is None:
            detail = f"The line is longer than {MAX_LINE_BYTES} bytes; it was not read."
            pending.append((number, None, _problem(413, "line-too-long", detail, max_line_bytes=MAX_LINE_BYTES)))
        else:
            value, problem = line_parse(line)
            pending.append((number, value, problem))
            events += problem is None
        if events >= chunk or len(pending) >= chunk:
            _flush(carrier, pending, cache, outcome, on_result)
            pending, events = [], 0
    if pending:
        _flush(carrier, pending, cache, outcome, on_result)
    outcome.gaps = telemetry_gaps_backfill(carrier=carrier, spans=outcome.spans)
    log.info(
        "telemetry backfill",
        extra={
            "carrier": carrier.slug,
            "lines": outcome.lines,
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "refused": outcome.refused,
            "gaps_backfilled": len(outcome.gaps),
        },
    )
    return outcome


def _flush(
    carrier: Carrier,
    pending: list[tuple[int, Any, LineResult | None]],
    cache: MissionCache,
    outcome: BackfillOutcome,
    on_result: Callable[[LineResult], None],
) -> None:
    """Ingest the pending events as one batch, then answer every pending line in order."""
    batch = [value for _, value, problem in pending if problem is None]
    with batch_admission().turn(patient=True):  # a chunk is a batch: it takes its turn like one
        result = ingest_events(carrier=carrier, events=batch, source=SOURCE, cache=cache, samples_dedupe=True)
    reasons = {int(r["index"]): str(r["reason"]) for r in result.rejected}
    index = 0
    for number, value, problem in pending:
        if problem is not None:
            outcome.refused += 1
            on_result({"line": number, "status": "refused", "problem": problem})
            continue
        reason = reasons.get(index)
        stored = index in result.stored_indexes
        index += 1
        if reason is not None:
            outcome.refused += 1
            on_result({"line": number, "status": "refused", "problem": _problem(422, "telemetry-rejected", reason)})
            continue
        # Validated by the ingest: an object whose event_id is a UUID string and ts a timestamp.
        outcome.accepted += stored
        outcome.duplicates += not stored
        _span_extend(outcome.spans, int(value["mission_id"]), _timestamp(value["ts"]))
        on_result({"line": number, "status": "accepted" if stored else "duplicate", "event_id": value["event_id"]})


def _span_extend(spans: dict[int, tuple[datetime, datetime]], mission_id: int, ts: datetime) -> None:
    span = spans.get(mission_id)
    spans[mission_id] = (ts, ts) if span is None else (min(span[0], ts), max(span[1], ts))


def _timestamp(text: str) -> datetime:
    # Already validated by the normalizer, which also reads RFC 3339's lower-case "z" and "t".
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        ts = datetime.fromisoformat(text.upper())
    return ts.astimezone(UTC)


def _problem(status: int, code: str, detail: str, **extra: Any) -> LineResult:
    return problem_body(status=status, code=code, detail=detail, **extra)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
