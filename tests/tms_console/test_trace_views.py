"""The trace page (``/traces/<trace id>/``) and the trace cards on the mission and incident pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from missions.choices import ExceptionKind, MissionStatus
from missions.events import Actor
from missions.models import Mission, TelemetrySample
from missions.services import mission_exception_report
from runbooks.detection import incident_from_exception
from runbooks.models import Incident
from tests.conftest import verified_client
from tests.factories import MissionFactory
from tests.tracing import StoredTrace, store_linked_span, store_tender_trace
from tms_console.models import TraceSpan
from tms_console.trace_store import links_out, trace_spans, waterfall_compact

pytestmark = pytest.mark.django_db

ABSENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def store_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing on, exporting to the embedded store (no collector configured)."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)


@pytest.fixture
def stored() -> StoredTrace:
    return store_tender_trace()


def page(user: User, trace_id: str) -> Any:
    return verified_client(user).get(reverse("traces:detail", kwargs={"trace_id": trace_id}))


def rows(html: str) -> list[tuple[str, int]]:
    """(span id, depth) of every waterfall row, in page order."""
    return [(m[0], int(m[1])) for m in re.findall(r'data-span-id="([0-9a-f]{16})" data-depth="(\d+)"', html)]


def names_in_page_order(html: str) -> list[str]:
    return [
        name.replace("&lt;", "<").replace("&gt;", ">")
        for name in re.findall(r'<span class="wf-name-text" title="[^"]*">([^<]*)</span>', html)
    ]


# --- Who may look -----------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["readonly", "dispatcher", "oncall", "sla_manager", "admin_user"])
def test_every_console_role_sees_a_trace(persona: str, stored: StoredTrace, request: Any) -> None:
    response = page(request.getfixturevalue(persona), stored.trace_id)
    assert response.status_code == 200
    assert len(rows(response.content.decode())) == len(stored.tree_order)


def test_a_user_without_a_console_role_is_refused(outsider: User, stored: StoredTrace) -> None:
    response = page(outsider, stored.trace_id)
    assert response.status_code == 403
    assert stored.trace_id not in response.content.decode()


def test_signed_out_and_password_only_users_are_sent_to_sign_in(readonly: User, stored: StoredTrace) -> None:
    url = reverse("traces:detail", kwargs={"trace_id": stored.trace_id})
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/account/login/" in anonymous["Location"]
    password_only = Client()
    password_only.force_login(readonly)  # no one-time code in this session
    response = password_only.get(url)
    assert response.status_code == 302 and "/account/login/" in response["Location"]


@pytest.mark.parametrize(
    "path",
    [
        "/traces/4BF92F3577B34DA6A3CE929D0E0E4736/",  # W3C trace ids are lower case
        "/traces/4bf92f3577b34da6a3ce929d0e0e473/",  # 31 digits
        "/traces/4bf92f3577b34da6a3ce929d0e0e47360/",  # 33
        "/traces/4bf92f3577b34da6a3ce929d0e0e473g/",
        "/traces/00000000000000000000000000000000/",  # the spec's invalid id
        "/traces/00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01/",  # a traceparent, not an id
    ],
)
def test_anything_but_a_trace_id_is_not_found(readonly: User, path: str) -> None:
    assert verified_client(readonly).get(path).status_code == 404


# --- The waterfall ------------------------------------------------------------------------------


def test_a_stored_trace_is_a_waterfall_in_tree_order_with_bars_errors_and_attributes(
    readonly: User, stored: StoredTrace
) -> None:
    response = page(readonly, stored.trace_id)
    html = response.content.decode()
    assert names_in_page_order(html) == stored.tree_order
    # Depth follows the tree: request 0, task 1, its calls 2, the carrier 3, its callback 4, the assignment 5,
    # and the request's own query back at 1 after the task's whole subtree.
    assert [depth for _, depth in rows(html)] == [0, 1, 2, 2, 3, 4, 5, 1]
    spans = {s.span_id: s for s in TraceSpan.objects.filter(trace_id=stored.trace_id)}
    ids = [span_id for span_id, _ in rows(html)]
    for parent, child in [(0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (5, 6), (0, 7)]:
        assert spans[ids[child]].parent_span_id == ids[parent]

    # Bars: SVG rects placed by attributes; the first starts at 0, the assignment 330 ms into 410 ms.
    rects = re.findall(r'<rect class="wf-bar[^"]*" x="([\d.]+)" y="2" width="([\d.]+)"', html)
    assert len(rects) == len(stored.tree_order)
    assert float(rects[0][0]) == 0.0
    assert float(rects[6][0]) == pytest.approx(100 * 330 / 410, abs=0.01)
    assert float(rects[6][1]) == pytest.approx(100 * 30 / 410, abs=0.01)
    # The failed first call: error marker, red bar, its status message.
    assert html.count("wf-error-mark") == 1 and "wf-bar-error" in html
    assert "HTTP 503 from the carrier" in html
    # Services, duration and the domain's ids (linked to their pages).
    assert "carrier-sim" in html and "tms-worker" in html
    assert "410 ms" in html
    assert 'class="mono">http.route</td>' in html and "shipments/&lt;int:pk&gt;/tender/" in html
    assert "<details>" in html  # attributes on demand
    # The CSP forbids inline styles and scripts: the page has none.
    assert " style=" not in html and "<script>" not in html.replace(" ", "")


def test_a_trace_lists_the_spans_that_link_to_it_and_what_it_links_to(readonly: User, stored: StoredTrace) -> None:
    batch_trace = store_linked_span(to=stored, name="telemetry batch lone-star")
    html = page(readonly, stored.trace_id).content.decode()
    linked = html.split('id="trace-linked"', 1)[1]
    assert "telemetry batch lone-star" in linked
    assert reverse("traces:detail", kwargs={"trace_id": batch_trace}) in linked

    # The batch's own trace says what led it there.
    assert [link.trace_id for link in links_out(batch_trace)] == [stored.trace_id]
    other = page(readonly, batch_trace).content.decode()
    assert 'id="trace-links-out"' in other
    assert reverse("traces:detail", kwargs={"trace_id": stored.trace_id}) in other
    assert "No stored span links to this trace." in other


def test_the_summary_links_the_domain_objects_the_spans_name(readonly: User) -> None:
    mission = MissionFactory()
    stored = store_tender_trace(mission_id=mission.pk)
    html = page(readonly, stored.trace_id).content.decode()
    assert reverse("missions:mission_detail", kwargs={"pk": mission.pk}) in html
    assert "lone-star" in html


# --- Empty states ---------------------------------------------------------------------------------


def test_with_tracing_off_the_page_says_so(readonly: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    html = page(readonly, ABSENT_TRACE).content.decode()
    assert 'data-absence="disabled"' in html and "OTEL_SDK_DISABLED" in html
    assert rows(html) == []


def test_with_a_collector_the_page_links_the_tracing_backend(
    readonly: User, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.internal:4318")
    settings.TRACE_UI_URL = "https://jaeger.internal/trace/{trace_id}"
    html = page(readonly, ABSENT_TRACE).content.decode()
    assert 'data-absence="collector"' in html and "http://collector.internal:4318" in html
    assert f'href="https://jaeger.internal/trace/{ABSENT_TRACE}"' in html

    settings.TRACE_UI_URL = ""
    html = page(readonly, ABSENT_TRACE).content.decode()
    assert "jaeger" not in html and "TRACE_UI_URL" in html  # says how to get the link


def test_with_the_store_the_page_explains_retention(readonly: User, store_mode: None, settings: Any) -> None:
    settings.TRACE_STORE_RETENTION_HOURS = 6.0
    html = page(readonly, ABSENT_TRACE).content.decode()
    assert 'data-absence="store"' in html
    assert "6 hours" in html and "TRACE_STORE_RETENTION_HOURS" in html


# --- The mission page -----------------------------------------------------------------------------


def mission_page(user: User, mission: Mission) -> str:
    response = verified_client(user).get(reverse("missions:mission_detail", kwargs={"pk": mission.pk}))
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_mission_page_shows_its_trace_with_database_calls_folded(readonly: User) -> None:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    stored = store_tender_trace(mission_id=mission.pk)
    Mission.objects.filter(pk=mission.pk).update(traceparent=stored.traceparent)
    html = mission_page(readonly, mission)
    card = html.split('id="mission-trace"', 1)[1].split("</section>", 1)[0]
    assert names_in_page_order(card) == [name for name in stored.tree_order if name != "SELECT"]
    assert "1 more span (database calls)" in card
    assert reverse("traces:detail", kwargs={"trace_id": stored.trace_id}) in card
    assert " style=" not in card


def test_a_mission_without_a_trace_says_why(readonly: User) -> None:
    mission = MissionFactory()
    card = mission_page(readonly, mission).split('id="mission-trace"', 1)[1].split("</section>", 1)[0]
    assert 'data-absence="untraced"' in card and "No trace was recorded for this mission" in card


def test_a_mission_trace_older_than_the_store_is_reported_pruned(
    readonly: User, store_mode: None, settings: Any
) -> None:
    settings.TRACE_STORE_RETENTION_HOURS = 24.0
    mission = MissionFactory(traceparent=f"00-{ABSENT_TRACE}-00f067aa0ba902b7-01")
    Mission.objects.filter(pk=mission.pk).update(created_at=datetime.now(tz=UTC) - timedelta(days=3))
    card = mission_page(readonly, mission).split('id="mission-trace"', 1)[1].split("</section>", 1)[0]
    assert 'data-absence="store"' in card and "This trace has been pruned" in card

    Mission.objects.filter(pk=mission.pk).update(created_at=datetime.now(tz=UTC))
    card = mission_page(readonly, mission).split('id="mission-trace"', 1)[1].split("</section>", 1)[0]
    assert "pruned" in card and "This trace has been pruned" not in card  # not yet stored, or exported elsewhere


def test_compact_keeps_depths_and_counts_what_it_leaves_out() -> None:
    stored = store_tender_trace()
    full = trace_spans(stored.trace_id)
    compact = waterfall_compact(full, max_rows=3)
    assert [row.span.name for row in compact.rows] == stored.tree_order[:3]
    assert [row.depth for row in compact.rows] == [row.depth for row in full.rows[:3]]
    assert compact.hidden == len(stored.tree_order) - 3


# --- The incident page ------------------------------------------------------------------------------


def test_the_incident_page_pins_the_missions_trace_its_own_and_the_telemetry_window(oncall: User) -> None:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    stored = store_tender_trace(mission_id=mission.pk)
    Mission.objects.filter(pk=mission.pk).update(traceparent=stored.traceparent)
    now = datetime.now(tz=UTC)
    TelemetrySample.objects.bulk_create(
        TelemetrySample(
            mission=mission,
            vehicle=mission.vehicle,
            recorded_at=now - timedelta(minutes=10) + timedelta(seconds=20 * i),
            lat=31.5 + 0.001 * i,
            lon=-96.4,
            speed_kph=80.0 + i,
        )
        for i in range(12)
    )
    exc = mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.EMERGENCY_STOP, actor=Actor.for_carrier(mission.carrier)
    )
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    incident = Incident.objects.get(pk=incident.pk)
    assert incident.pinned_traceparent == stored.traceparent and len(incident.pinned_telemetry) == 12
    # An incident opened while tracing was off has no trace of its own (whatever an earlier test left
    # configured in this process).
    Incident.objects.filter(pk=incident.pk).update(traceparent="")

    response = verified_client(oncall).get(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk}))
    html = response.content.decode()
    pinned = html.split('id="incident-pinned-trace"', 1)[1].split("</section>", 1)[0]
    assert names_in_page_order(pinned)[0] == "POST /shipments/<int:pk>/tender/"
    assert reverse("traces:detail", kwargs={"trace_id": stored.trace_id}) in pinned
    # Its own trace: none, so the card explains.
    own = html.split('id="incident-trace"', 1)[1].split("</section>", 1)[0]
    assert 'data-absence="untraced"' in own

    telemetry = html.split('id="incident-telemetry"', 1)[1].split("</section>", 1)[0]
    assert "<dt>Samples</dt><dd>12</dd>" in telemetry
    assert "31.51100, -96.40000" in telemetry  # the last position
    assert "91 km/h" in telemetry  # the last speed
    assert "Minute by minute" in telemetry
    assert telemetry.count("<tr><td>") >= 4  # one row per minute the samples span


def test_an_incident_without_telemetry_says_so(oncall: User) -> None:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    exc = mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.EMERGENCY_STOP, actor=Actor.for_carrier(mission.carrier)
    )
    incident = incident_from_exception(exception_id=exc.pk)
    assert incident is not None
    html = verified_client(oncall).get(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk})).content
    telemetry = html.decode().split('id="incident-telemetry"', 1)[1].split("</section>", 1)[0]
    assert "No telemetry in the 30 minutes before detection." in telemetry
