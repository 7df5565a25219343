"""One load, one trace: the dispatcher's tender through the real carrier simulator and back, in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from pytest_django.live_server_helper import LiveServer

from missions.choices import TenderStatus
from missions.events import Actor
from missions.models import Mission, Shipment, Tender
from missions.partner.services import partner_client_create
from tests.conftest import verified_client
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tracing import SwitchedExporter
from tms_console import tracing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def traced_live_server(spans: SwitchedExporter) -> Iterator[LiveServer]:
    """A live server started after the instrumentation, so its requests get server spans."""
    server = LiveServer("127.0.0.1:0")
    try:
        yield server
    finally:
        server.stop()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _one(spans: list[ReadableSpan], what: str, match: Any) -> ReadableSpan:
    found = [span for span in spans if match(span)]
    assert found, f"no {what} in the trace: {[span.name for span in spans]}"
    return found[0]


def test_a_tender_through_the_simulator_is_one_trace_from_the_dispatcher_to_the_mission(
    spans: SwitchedExporter,
    traced_live_server: LiveServer,
    make_sim: SimFactory,
    shipment: Shipment,
    dispatcher: Any,
    settings: Any,
) -> None:
    settings.PUBLIC_BASE_URL = traced_live_server.url
    sim = make_sim(answer="async", delay_ms=3_600_000, policy={"accept": 1.0})
    carrier = push_carrier(sim, name="Traced Autonomy")
    issued = partner_client_create(
        carrier_id=carrier.pk, name="sim", scopes=["tender:write", "tender:read"], actor=Actor.system("test")
    )
    sim.state.config.console_url = traced_live_server.url
    sim.state.config.console_client_id = issued.client_id
    sim.state.config.console_client_secret = issued.client_secret

    # The dispatcher tenders in the browser; the send task runs (eagerly) once the request commits.
    response = verified_client(dispatcher).post(
        reverse("missions:shipment_tender", kwargs={"pk": shipment.pk}), {"carrier": str(carrier.pk)}
    )
    assert response.status_code == 302
    tender = Tender.objects.get(shipment=shipment, carrier=carrier)
    assert tender.status == TenderStatus.SENT
    # Later the carrier answers through the partner API, continuing the trace it was sent in.
    record = sim.answer_now(tender.external_ref)
    assert record is not None and record["status_code"] == 201, record
    mission = Mission.objects.get(tender=tender)

    trace_id_hex = tracing.trace_id_of(tender.traceparent)
    assert trace_id_hex, "the tender did not record the trace it was created in"
    assert tracing.trace_id_of(mission.traceparent) == trace_id_hex
    trace = spans.of_trace(int(trace_id_hex, 16))

    tender_request = _one(
        trace,
        "dispatcher request",
        lambda s: s.kind is SpanKind.SERVER and _attrs(s).get("http.route", "").endswith("tender/"),
    )
    task = _one(trace, "send task", lambda s: "missions.tender_send" in s.name)
    outbound = _one(
        trace,
        "outbound tender submit",
        lambda s: (
            s.kind is SpanKind.CLIENT
            and str(_attrs(s).get("url.full", _attrs(s).get("http.url"))) == f"{sim.url}/tenders"
        ),
    )
    carrier_server = _one(
        trace, "carrier's server span", lambda s: s.kind is SpanKind.SERVER and s.name == "carrier-sim POST /tenders"
    )
    callback = _one(
        trace,
        "offer callback",
        lambda s: s.kind is SpanKind.SERVER and "/offers" in str(_attrs(s).get("http.route", "")),
    )

    # One tree: every span's parent is in the trace, and the chain runs request -> task -> call -> carrier.
    by_id = {span.context.span_id: span for span in trace if span.context}
    roots = [span for span in trace if span.parent is None or span.parent.span_id not in by_id]
    assert roots == [tender_request], [span.name for span in roots]

    def ancestors(span: ReadableSpan) -> list[ReadableSpan]:
        chain = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            chain.append(span)
        return chain

    assert task in ancestors(outbound) and tender_request in ancestors(task)
    assert outbound in ancestors(carrier_server)
    assert carrier_server in ancestors(callback)

    # The domain's ids are on the spans; nothing else under tms.*.
    attributes: dict[str, set[str]] = {}
    for span in trace:
        for key, value in _attrs(span).items():
            if key.startswith("tms."):
                attributes.setdefault(key, set()).add(str(value))
    assert str(shipment.pk) in attributes["tms.shipment_id"]
    assert str(mission.pk) in attributes["tms.mission_id"]
    assert str(shipment.correlation_id) in attributes["tms.correlation_id"]
    assert carrier.slug in attributes["tms.carrier"]
    assert set(attributes) <= {f"tms.{key}" for key in tracing.DOMAIN_KEYS}
    # The carrier got the context on the wire.
    submit = next(r for r in sim.requests if r["path"] == "/tenders" and r["method"] == "POST")
    assert trace_id_hex in str(submit["traceparent"]), submit
