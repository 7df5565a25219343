"""The sampler every process uses: the configured one, minus calls made outside any trace."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from tms_console.tracing import NoOrphanCalls

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


def _inside_a_trace(sampled: bool = True) -> object:
    parent = SpanContext(TRACE_ID, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(1 if sampled else 0))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def test_a_call_outside_any_trace_is_dropped_whatever_the_configured_sampler() -> None:
    sampler = NoOrphanCalls(ALWAYS_ON)
    assert sampler.should_sample(None, TRACE_ID, "ZRANGE", SpanKind.CLIENT).decision is Decision.DROP
    assert sampler.should_sample(None, TRACE_ID, "SELECT", SpanKind.CLIENT, {"db.system": "postgresql"}).decision is (
        Decision.DROP
    )


def test_what_starts_a_trace_on_purpose_and_calls_inside_one_follow_the_configured_sampler() -> None:
    sampler = NoOrphanCalls(ParentBased(ALWAYS_ON))
    for kind in (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.INTERNAL):
        assert sampler.should_sample(None, TRACE_ID, "root", kind).decision is Decision.RECORD_AND_SAMPLE
    inside = _inside_a_trace()
    assert sampler.should_sample(inside, TRACE_ID, "SELECT", SpanKind.CLIENT).decision is Decision.RECORD_AND_SAMPLE  # type: ignore[arg-type]
    # The parent's decision still rules inside a trace: an unsampled caller's call is not recorded.
    unsampled = _inside_a_trace(sampled=False)
    assert sampler.should_sample(unsampled, TRACE_ID, "SELECT", SpanKind.CLIENT).decision is Decision.DROP  # type: ignore[arg-type]
    # A ratio sampler still decides for new traces.
    never = NoOrphanCalls(TraceIdRatioBased(0.0))
    assert never.should_sample(None, TRACE_ID, "POST /api", SpanKind.SERVER).decision is Decision.DROP
    assert "NoOrphanCalls" in never.get_description()
