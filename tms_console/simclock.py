"""A clock every process of the product shares, moved by a simulation: wall time read from a file.

A simulated program of fleet days (``manage.py simulate_program``) cannot wait thirty real days, and
moving only the simulator's clock would leave the console judging telemetry, gaps, waits and SLA windows
by the real one. With ``TMS_SIM_CLOCK_FILE`` set (never in production: ``manage.py check --deploy``
refuses it), each process of the product (web, partner server, worker, beat, bridges, simulators) reads
its wall time from that file instead:

* at start-up (``TmsConsoleConfig.ready``) the process travels to the instant the file holds, with the
  clock stopped (``time_machine``: ``time.time``, ``datetime.now``, ``timezone.now`` and their kin);
* a daemon thread polls the file every ``TMS_SIM_CLOCK_POLL_SECONDS`` (5 ms) and moves the process's
  clock to each new instant the controller writes; a forked child (Celery's prefork pool) starts its own;
* ``time.monotonic`` and ``time.perf_counter`` are left alone, so timeouts, retries and sleeps still take
  real time: the controller moves the clock in steps and waits for the product between them.

The controller writes with ``clock_write`` (an atomic rename); ``clock_read`` reads it back. Every
process has seen an instant ``clock_settle_seconds()`` after it was written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_FILE = "TMS_SIM_CLOCK_FILE"
ENV_POLL = "TMS_SIM_CLOCK_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 0.005

_state: dict[str, Any] = {}
_lock = threading.Lock()


class SimClockError(ValueError):
    """The clock file is missing or does not hold an ISO 8601 instant with a UTC offset."""


def clock_write(path: str | os.PathLike[str], instant: datetime) -> None:
    """Set the simulated instant every process of the product reads (atomically: never half a line)."""
    if instant.tzinfo is None:
        raise SimClockError("the simulated instant needs a time zone (UTC)")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(instant.astimezone(UTC).isoformat() + "\n")
    os.replace(tmp, target)


def clock_read(path: str | os.PathLike[str]) -> datetime:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise SimClockError(f"cannot read the simulated clock at {path}: {exc.strerror}") from exc
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise SimClockError(f"the simulated clock at {path} holds {text[:40]!r}, not an ISO 8601 instant") from None
    if instant.tzinfo is None:
        raise SimClockError(f"the simulated clock at {path} holds {text[:40]!r}, without a UTC offset")
    return instant


def poll_seconds() -> float:
    try:
        value = float(os.environ.get(ENV_POLL, DEFAULT_POLL_SECONDS))
    except ValueError:
        raise SimClockError(f"{ENV_POLL} must be a number of seconds") from None
    if not 0.001 <= value <= 1.0:
        raise SimClockError(f"{ENV_POLL} must be between 0.001 and 1 s")
    return value


def clock_settle_seconds() -> float:
    """How long after a write every process has moved: two polls and some scheduling slack."""
    return 2 * poll_seconds() + 0.02


def active() -> bool:
    return bool(_state.get("path"))


def install_from_env() -> bool:
    """Follow ``TMS_SIM_CLOCK_FILE`` when it is set; True when this process now runs on simulated time."""
    path = os.environ.get(ENV_FILE, "").strip()
    if not path:
        return False
    install(path)
    return True


def install(path: str) -> None:
    """Travel to the file's instant and follow its changes (idempotent within a process)."""
    import time_machine

    with _lock:
        if _state.get("path") == path and _state.get("pid") == os.getpid():
            return
        instant = clock_read(path)
        traveller = time_machine.travel(instant, tick=False)
        coordinates = traveller.start()
        _state.update(
            path=path, pid=os.getpid(), traveller=traveller, coordinates=coordinates, seen=instant,
            stop=threading.Event(),
        )  # fmt: skip
        _follower_start()
        if not _state.get("fork_hook"):
            os.register_at_fork(after_in_child=_after_fork)
            _state["fork_hook"] = True
    log.info("simulated clock: following %s, now %s", path, instant.isoformat())


def _after_fork() -> None:
    """A forked child keeps the travel but not the thread: start its own follower."""
    if _state.get("path"):
        _state["pid"] = os.getpid()
        _state["stop"] = threading.Event()
        _follower_start()


def _follower_start() -> None:
    thread = threading.Thread(target=_follow, args=(_state["stop"],), name="sim-clock", daemon=True)
    thread.start()


def _follow(stop: threading.Event) -> None:
    # The file is read at every poll (a few microseconds): two writes within one tick of the file system's
    # clock can leave its modification time, even its inode number, unchanged.
    interval = poll_seconds()
    path = _state["path"]
    while not stop.wait(interval):
        with contextlib.suppress(SimClockError):
            instant = clock_read(path)
            if instant != _state["seen"]:
                _state["coordinates"].move_to(instant)
                _state["seen"] = instant


def uninstall() -> None:
    """Back to the real clock (tests)."""
    with _lock:
        stop = _state.get("stop")
        if stop is not None:
            stop.set()
        traveller = _state.get("traveller")
        if traveller is not None:
            traveller.stop()
        for key in ("path", "pid", "traveller", "coordinates", "seen", "stop"):
            _state.pop(key, None)
