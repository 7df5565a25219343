"""The task ledger of a simulated run: which Celery tasks are still to run, across every process.

A simulated program (``manage.py simulate_program --tasks worker``) moves the shared clock
(``tms_console.simclock``) in steps; before it moves on, every task the instant caused must have
run in the worker, or the worker would act at a later instant than the one its task belongs to.
Celery keeps no results here (``CELERY_TASK_IGNORE_RESULT``), so each process of the run that
publishes or runs tasks writes to a ledger folder (``TMS_SIM_TASKS_DIR``, set only together with
``TMS_SIM_CLOCK_FILE``):

* ``before_task_publish`` adds the task's id under ``pending/`` (with a count: a retry publishes
  the same id again), before the message leaves, so a task is in the ledger before it can run;
* ``task_postrun`` takes one count off, after the task body and everything it published;
* ``task_failure`` writes ``failed/<id>`` with the task's name and error, which stops the run.

The folder is empty of pending ids exactly when nothing is queued or running: a parent's
``task_postrun`` comes after the ledger entries of the tasks it published.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

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


def _finished(task_id: str | None = None, **_: Any) -> None:
    if not task_id or not active():
        return
    entry = Path(_state["path"]) / "pending" / task_id
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


def failures(path: str | os.PathLike[str]) -> list[str]:
    """One line per task that raised: its name and error."""
    out = []
    for entry in sorted((Path(path) / "failed").iterdir()):
        if not entry.name.startswith("."):
            with contextlib.suppress(OSError):
                out.append(f"{entry.read_text()} ({entry.name})")
    return out
