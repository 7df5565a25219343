"""Drain deadlines: every long-running process exits within its stated drain time after SIGTERM.

Each process drains the ordinary way first: it stops taking work, then
finishes or cleanly refuses what it holds (daphne: ``tms_console.daphne_drain``;
the Celery worker and beat: ``tms_console.celery``; the MQTT bridge and the
simulators: their commands). ``exit_deadline`` is the backstop behind that: a
daemon thread that ends the process when the drain time is over and it is
still alive, because a thread stuck in a call that never returns (a socket
without a timeout, an ``async_to_sync`` into a loop that has stopped) would
otherwise keep the interpreter waiting in its exit for ever. It logs the
threads that were still running, so the stuck one has a name.

The drain times (README, "Graceful shutdown"): daphne ``WEB_DRAIN_SECONDS``,
gunicorn its ``--graceful-timeout``, the Celery worker ``WORKER_DRAIN_SECONDS``,
beat ``BEAT_DRAIN_SECONDS``, the MQTT bridge ``MQTT_DRAIN_SECONDS``, the
simulators ``SIMULATOR_DRAIN_SECONDS``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

log = logging.getLogger(__name__)

# Fixed drain times of the processes that have no setting of their own.
BEAT_DRAIN_SECONDS = 5.0
SIMULATOR_DRAIN_SECONDS = 5.0
# The exit status of a process ended by its deadline (EX_SOFTWARE): not a clean exit.
EXIT_DRAIN_EXPIRED = 70
# Left for the interpreter's own exit after the drain proper (a process's drain stops its work
# this long before its deadline, so a clean exit does not race the backstop).
EXIT_MARGIN_SECONDS = 1.0

_armed_at: float | None = None
_lock = threading.Lock()


def exit_deadline(seconds: float, *, process: str) -> float:
    """End this process ``seconds`` from now if it is still alive then; returns the deadline (monotonic).

    Called when the stop begins; a second call keeps the first deadline.
    """
    global _armed_at
    with _lock:
        if _armed_at is not None:
            return _armed_at + seconds
        _armed_at = time.monotonic()
        deadline = _armed_at + seconds
    thread = threading.Thread(
        target=_expire, args=(deadline, seconds, process), name=f"{process}-drain-deadline", daemon=True
    )
    thread.start()
    return deadline


def _expire(deadline: float, seconds: float, process: str) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)
    log.warning(
        "drain time over; exiting now",
        extra={
            "event": "shutdown.deadline",
            "component": process,
            "drain_seconds": seconds,
            "threads": _where_threads_are(),
        },
    )
    # Nothing more can be done about a broken log stream at exit.
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_DRAIN_EXPIRED)


def _where_threads_are() -> dict[str, str]:
    """Each other live thread's name and the innermost frames it is in (which one holds the process)."""
    frames = sys._current_frames()
    where = {}
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.ident is None:
            continue
        stack = traceback.extract_stack(frames[thread.ident]) if thread.ident in frames else []
        kind = "daemon" if thread.daemon else "joined at exit"
        where[thread.name] = f"{kind}: " + " < ".join(
            f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack[-4:])
        )
    return where


def drain_left(deadline: float) -> float:
    """Seconds the drain proper may still take before ``deadline`` (keeping the exit margin)."""
    return max(0.0, deadline - EXIT_MARGIN_SECONDS - time.monotonic())
