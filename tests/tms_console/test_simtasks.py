"""The task ledger of a simulated run (tms_console/simtasks.py), and runbook waits under a simulated clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import signals

from runbooks import tasks as runbook_tasks
from tms_console import simclock, simtasks


class _Task:
    name = "sla.evaluate_carrier"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Path]:
    simtasks.install(tmp_path)
    yield tmp_path
    simtasks.uninstall()


def _publish(task_id: str, name: str = "sla.evaluate_carrier") -> None:
    signals.before_task_publish.send(sender=name, body=(), headers={"id": task_id}, exchange="", routing_key="")


def test_a_task_is_pending_from_its_publication_until_it_has_run(ledger: Path) -> None:
    sent = simtasks.published()
    _publish("t-1")
    _publish("t-2", "runbooks.tick")
    assert simtasks.pending(ledger) == ["sla.evaluate_carrier (t-1)", "runbooks.tick (t-2)"]
    assert simtasks.published() == sent + 2
    signals.task_postrun.send(sender=_Task(), task_id="t-1", task=None)
    assert simtasks.pending(ledger) == ["runbooks.tick (t-2)"]
    signals.task_postrun.send(sender=_Task(), task_id="t-2", task=None)
    assert simtasks.pending(ledger) == [] and simtasks.failures(ledger) == []
    assert simtasks.ran(ledger) == ["sla.evaluate_carrier", "sla.evaluate_carrier"]


def test_a_retry_under_the_same_id_keeps_it_pending_until_the_retry_has_run(ledger: Path) -> None:
    _publish("t-1")
    _publish("t-1")  # the task's own retry, published while it runs
    signals.task_postrun.send(sender=_Task(), task_id="t-1", task=None)
    assert simtasks.pending(ledger) == ["sla.evaluate_carrier (t-1)"]
    signals.task_postrun.send(sender=_Task(), task_id="t-1", task=None)
    assert simtasks.pending(ledger) == []


def test_a_failed_task_is_kept_with_its_error(ledger: Path) -> None:
    _publish("t-9")
    signals.task_failure.send(sender=_Task(), task_id="t-9", exception=ValueError("no such carrier"))
    signals.task_postrun.send(sender=_Task(), task_id="t-9", task=None)
    assert simtasks.failures(ledger) == ["sla.evaluate_carrier: ValueError: no such carrier (t-9)"]


def test_nothing_is_written_without_a_ledger(tmp_path: Path) -> None:
    assert not simtasks.active()
    _publish("t-1")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("simulated", [False, True])
def test_a_runbook_wait_is_left_to_the_tick_under_a_simulated_clock(
    simulated: bool, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker counts a countdown in real seconds; a simulated clock moves in steps of its own."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(runbook_tasks.runbook_advance_task, "apply_async", lambda args, **kw: sent.append(kw))
    if simulated:
        clock = tmp_path / "clock"
        simclock.clock_write(clock, datetime(2026, 1, 5, tzinfo=UTC))
        simclock.install(str(clock))
    try:
        runbook_tasks.runbook_schedule(run_id=1, countdown=300)
        runbook_tasks.runbook_schedule(run_id=1)
    finally:
        simclock.uninstall()
    assert sent == ([{"countdown": 0}] if simulated else [{"countdown": 300}, {"countdown": 0}])
