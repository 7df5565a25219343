"""Telemetry batches take turns in a server process (``missions.telemetry.admission``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from missions.models import Mission
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry.admission import BatchAdmission, IngestBusy, batch_admission
from tests.partner.conftest import assert_problem
from tests.partner.test_isolation import telemetry_event


class Holder:
    """A thread that holds a turn of ``admission`` until released."""

    def __init__(self, admission: BatchAdmission) -> None:
        self.admission = admission
        self.inside = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.admission.turn():
                self.inside.set()
                self.release.wait(10)
        except BaseException as exc:  # the test reads it
            self.error = exc
            self.inside.set()

    def start(self) -> Holder:
        self.thread.start()
        return self

    def done(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for h in started:
        h.done()


def _hold(holders: list[Holder], admission: BatchAdmission) -> Holder:
    h = Holder(admission).start()
    holders.append(h)
    return h


def test_no_more_batches_than_the_concurrency_work_at_once(holders: list[Holder]) -> None:
    admission = BatchAdmission(concurrency=2, waiting_max=4, wait_seconds=5)
    first, second = _hold(holders, admission), _hold(holders, admission)
    assert first.inside.wait(5) and second.inside.wait(5)
    assert admission.working == 2
    third = _hold(holders, admission)
    deadline = time.monotonic() + 5
    while admission.waiting != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not third.inside.is_set()  # waiting, not working
    first.done()
    assert third.inside.wait(5) and third.error is None  # its turn came when one left
    assert admission.working == 2 and admission.waiting == 0


def test_a_batch_beyond_the_waiting_room_is_refused_at_once(holders: list[Holder]) -> None:
    admission = BatchAdmission(concurrency=1, waiting_max=1, wait_seconds=5)
    assert _hold(holders, admission).inside.wait(5)
    _hold(holders, admission)
    deadline = time.monotonic() + 5
    while admission.waiting != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(IngestBusy) as refused, admission.turn():
        pytest.fail("admitted beyond the waiting room")
    assert time.monotonic() - started < 1  # not after waiting
    assert refused.value.retry_after >= 1 and "nothing of this batch was stored" in str(refused.value)


def test_a_batch_whose_turn_does_not_come_in_time_is_refused(holders: list[Holder]) -> None:
    admission = BatchAdmission(concurrency=1, waiting_max=4, wait_seconds=0.2)
    assert _hold(holders, admission).inside.wait(5)
    started = time.monotonic()
    with pytest.raises(IngestBusy, match=r"waited 0\.2 s"), admission.turn():
        pytest.fail("admitted while the only turn was held")
    assert 0.2 <= time.monotonic() - started < 3
    assert admission.waiting == 0 and admission.working == 1


def test_a_failing_batch_gives_its_turn_back() -> None:
    admission = BatchAdmission(concurrency=1, waiting_max=0, wait_seconds=1)
    with pytest.raises(RuntimeError), admission.turn():
        raise RuntimeError("the batch failed")
    with admission.turn():
        assert admission.working == 1
    assert admission.working == 0


def test_concurrency_zero_admits_everything(holders: list[Holder]) -> None:
    admission = BatchAdmission(concurrency=0, waiting_max=0, wait_seconds=1)
    many = [_hold(holders, admission) for _ in range(5)]
    assert all(h.inside.wait(5) and h.error is None for h in many)


@pytest.mark.django_db
@override_settings(TELEMETRY_BATCH_CONCURRENCY=1, TELEMETRY_BATCH_WAITING_MAX=0, TELEMETRY_BATCH_WAIT_SECONDS=1)
def test_the_api_answers_a_refused_batch_with_503_and_its_retry_is_accepted(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any], holders: list[Holder]
) -> None:
    holder = _hold(holders, batch_admission())  # another batch of this process has the only turn
    assert holder.inside.wait(5)
    body = {"events": [telemetry_event(mission_a)]}
    refused = post_json(api_a, "/api/v1/telemetry/batch", body, key="batch-0001")
    problem = assert_problem(refused, 503, "/ingest-busy")
    assert refused["Retry-After"] == "1"
    assert "nothing of this batch was stored" in problem["detail"]
    assert not TelemetryWindowEvent.objects.exists()

    holder.done()
    # The same request, same key: the refusal claimed nothing, so this is its first run.
    accepted = post_json(api_a, "/api/v1/telemetry/batch", body, key="batch-0001")
    assert accepted.status_code == 202, accepted.content
    assert accepted.json()["accepted"] == 1
    assert TelemetryWindowEvent.objects.count() == 1


@pytest.mark.django_db
def test_the_settings_shape_the_process_admission() -> None:
    shape = {"TELEMETRY_BATCH_CONCURRENCY": 3, "TELEMETRY_BATCH_WAITING_MAX": 7, "TELEMETRY_BATCH_WAIT_SECONDS": 2}
    with override_settings(**shape):
        admission = batch_admission()
        assert (admission.concurrency, admission.waiting_max, admission.wait_seconds) == (3, 7, 2.0)
        assert batch_admission() is admission  # one per process while the settings stand
    assert batch_admission().concurrency == 2  # the default


@pytest.mark.django_db
@override_settings(TELEMETRY_BATCH_CONCURRENCY=1, TELEMETRY_BATCH_WAITING_MAX=0, TELEMETRY_BATCH_WAIT_SECONDS=1)
def test_a_refused_batch_is_counted_as_shed_not_as_a_server_error(
    api_a: APIClient, mission_a: Mission, post_json: Callable[..., Any], holders: list[Holder]
) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    busy_before = sample("tms_telemetry_batches_busy_total")
    errors_before = sample("tms_http_request_errors_total", endpoint="/api/v1/telemetry/batch")
    answered_before = sample("tms_http_requests_total", endpoint="/api/v1/telemetry/batch", method="POST", status="5xx")
    assert _hold(holders, batch_admission()).inside.wait(5)
    refused = post_json(api_a, "/api/v1/telemetry/batch", {"events": [telemetry_event(mission_a)]})
    assert refused.status_code == 503
    assert sample("tms_telemetry_batches_busy_total") == busy_before + 1
    # Answered and counted by status class like every answer, but not an error a canary or an alert reads.
    assert (
        sample("tms_http_requests_total", endpoint="/api/v1/telemetry/batch", method="POST", status="5xx")
        == answered_before + 1
    )
    assert sample("tms_http_request_errors_total", endpoint="/api/v1/telemetry/batch") == errors_before


@pytest.mark.django_db(transaction=True)
@override_settings(TELEMETRY_BATCH_CONCURRENCY=1, TELEMETRY_BATCH_WAITING_MAX=0, TELEMETRY_BATCH_WAIT_SECONDS=0.1)
def test_a_backfill_waits_for_its_turn_as_long_as_it_takes(mission_a: Mission, holders: list[Holder]) -> None:
    import io
    import json

    from missions.telemetry.backfill import telemetry_backfill

    holder = _hold(holders, batch_admission())
    assert holder.inside.wait(5)
    body = "".join(json.dumps(telemetry_event(mission_a)) + "\n" for _ in range(3)).encode()
    answers: list[dict[str, Any]] = []
    done = threading.Event()

    def upload() -> None:
        try:
            telemetry_backfill(carrier=mission_a.carrier, stream=io.BytesIO(body), on_result=answers.append)
        finally:
            from django.db import connection

            connection.close()
            done.set()

    threading.Thread(target=upload, daemon=True).start()
    # Longer than a batch may wait (0.1 s): the backfill is neither refused nor stored meanwhile.
    assert not done.wait(0.5)
    assert answers == [] and not TelemetryWindowEvent.objects.exists()
    holder.done()
    assert done.wait(10)
    assert [a["status"] for a in answers] == ["accepted"] * 3
    assert TelemetryWindowEvent.objects.count() == 3
