"""The task ledger of a simulated run: which Celery tasks are still to run, across every process.

A simulated program (``manage.py simulate_program --tasks worker``) moves the shared clock
(``tms_console.simclock``) in steps; before it moves on, every task the instant caused must have
run in the worker, or the worker would act at a later instant than the one its task belongs to.
Celery keeps no results here (``CELERY_TASK_IGNORE_RESULT``), so each process of the run that
publishes or runs tasks writes to a ledger folder (``TMS_SIM_TASKS_DIR``, set only together with
``TMS_SIM_CLOCK_FILE``):

* ``before_task_publish`` adds the task's id under ``pending/`` (with a count: a retry publishes
  the same id again), before the message leaves, so a task is in the ledger before it can run;
* ``task_postrun`` takes one count off, after the task body and everything it published, and adds the
  task's name to ``ran``;
* ``task_failure`` writes ``failed/<id>`` with the task's name and error, which stops the run.

The folder is empty of pending ids exactly when nothing is queued or running: a parent's
``task_postrun`` comes after the ledger entries of the tasks it published.

The run's beat (``celery beat -S tms_console.simtasks:SimScheduler``) writes ``beat``: the instant
at which it last found nothing due, read before it looked. Once that is the clock's instant, beat
has sent everything due then.
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.beat import Scheduler

ENV_DIR = "TMS_SIM_TASKS_DIR"

_state: dict[str, Any] = {}
_lock = threading.Lock()


def active() -> bool:
    return bool(_state.get("path"))


def _task_id(headers: dict[str, Any] | None, body: Any) -> str | None:
    if headers and headers.get("id"):
        return str(headers["id"])  # message protocol 2
    if isinstance(body, dict) and body.get("id"):
        return str(body["id"])  # protocol 1
    return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _published(sender: str | None = None, headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    task_id = _task_id(headers, body)
    if task_id is None or not active():
        return
    entry = Path(_state["path"]) / "pending" / task_id
    with _lock:
        _state["published"] = _state.get("published", 0) + 1
        count = 0
        with contextlib.suppress(OSError, ValueError):
            count = int(entry.read_text().split(" ", 1)[0])
        _write(entry, f"{count + 1} {sender or '?'}")


def _finished(task_id: str | None = None, sender: Any = None, **_: Any) -> None:
    if not task_id or not active():
        return
    entry = Path(_state["path"]) / "pending" / task_id
    with (Path(_state["path"]) / "ran").open("a") as ran:  # one line per task run: its name
        ran.write(f"{getattr(sender, 'name', '?')}\n")
    with _lock:
        try:
            count, _sep, name = entry.read_text().partition(" ")
        except OSError:
            return  # published before the ledger was installed
        if int(count) > 1:
            _write(entry, f"{int(count) - 1} {name}")
        else:
            entry.unlink(missing_ok=True)


def _failed(task_id: str | None = None, exception: BaseException | None = None, sender: Any = None, **_: Any) -> None:
    if not task_id or not active():
        return
    name = getattr(sender, "name", "?")
    _write(Path(_state["path"]) / "failed" / task_id, f"{name}: {type(exception).__name__}: {exception}"[:2000])


def published() -> int:
    """How many tasks this process has sent while a ledger was installed."""
    return int(_state.get("published", 0))


def install(path: str | os.PathLike[str]) -> None:
    """Keep this process's published and finished tasks in the ledger at ``path`` (idempotent)."""
    from celery import signals

    folder = Path(path)
    (folder / "pending").mkdir(parents=True, exist_ok=True)
    (folder / "failed").mkdir(parents=True, exist_ok=True)
    with _lock:
        _state["path"] = str(folder)
    signals.before_task_publish.connect(_published, weak=False, dispatch_uid="tms-sim-ledger-published")
    signals.task_postrun.connect(_finished, weak=False, dispatch_uid="tms-sim-ledger-finished")
    signals.task_failure.connect(_failed, weak=False, dispatch_uid="tms-sim-ledger-failed")


def install_from_env() -> bool:
    path = os.environ.get(ENV_DIR, "").strip()
    if not path:
        return False
    install(path)
    return True


def uninstall() -> None:
    from celery import signals

    signals.before_task_publish.disconnect(dispatch_uid="tms-sim-ledger-published")
    signals.task_postrun.disconnect(dispatch_uid="tms-sim-ledger-finished")
    signals.task_failure.disconnect(dispatch_uid="tms-sim-ledger-failed")
    with _lock:
        _state.pop("path", None)


def pending(path: str | os.PathLike[str]) -> list[str]:
    """``<task name> (<id>)`` of every task still queued or running."""
    out = []
    for entry in sorted((Path(path) / "pending").iterdir()):
        if entry.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            out.append(f"{entry.read_text().partition(' ')[2]} ({entry.name})")
    return out


def ran(path: str | os.PathLike[str]) -> list[str]:
    """The names of the tasks run, in order."""
    try:
        return (Path(path) / "ran").read_text().splitlines()
    except OSError:
        return []


def failures(path: str | os.PathLike[str]) -> list[str]:
    """One line per task that raised: its name and error."""
    out = []
    for entry in sorted((Path(path) / "failed").iterdir()):
        if not entry.name.startswith("."):
            with contextlib.suppress(OSError):
                out.append(f"{entry.read_text()} ({entry.name})")
    return out


def beat_idle(path: str | os.PathLike[str]) -> datetime | None:
    """The instant at which the run's beat last found nothing due (None before its first look)."""
    try:
        return datetime.fromisoformat((Path(path) / "beat").read_text().strip())
    except (OSError, ValueError):
        return None


class SimScheduler(Scheduler):
    """Beat's in-memory scheduler, noting in the ledger each instant at which nothing more is due.

    It looks every ``POLL_SECONDS`` of real time: the simulated clock jumps whenever the program moves it.
    """

    POLL_SECONDS = 0.005

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_interval = self.POLL_SECONDS  # type: ignore[assignment]  # celery annotates whole seconds; it sleeps floats

    def tick(self, *args: Any, **kwargs: Any) -> float:
        looked_at = self.app.now()  # before looking: a clock moved meanwhile is looked at again
        interval = float(super().tick(*args, **kwargs))
        if interval > 0 and active():
            _write(Path(_state["path"]) / "beat", looked_at.astimezone(UTC).isoformat())
        return interval
