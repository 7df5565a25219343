"""A task for the worker-shutdown test (``celery worker --include tests.faults.shutdown_tasks``).

It writes what happens to a journal file the test reads: its start, then its end
once a release file exists (or after ``hold_seconds`` without one), each with the
worker's pid, so the test sees which worker ran what and what was finished.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import shared_task


def _note(directory: str, line: str) -> None:
    with (Path(directory) / "journal").open("a") as journal:
        journal.write(f"{line} {os.getpid()}\n")


@shared_task(name="tests.shutdown.hold", acks_late=True, ignore_result=True)
def hold(directory: str, name: str, hold_seconds: float) -> None:
    """Note the start, wait for ``<directory>/<name>.release`` or ``hold_seconds``, note the end."""
    _note(directory, f"started {name}")
    deadline = time.monotonic() + hold_seconds
    release = Path(directory) / f"{name}.release"
    while time.monotonic() < deadline and not release.exists():
        time.sleep(0.05)
    _note(directory, f"done {name}")
