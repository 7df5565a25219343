"""Where a run's Celery tasks run: eagerly in the program's process, or in a worker process of the run's own.

``Eager`` (the default) runs every task where it is sent, at the instant it is sent. ``Worker``
starts ``celery worker`` (solo pool) on the run's database and clock file, consuming a queue of
the run's own on the configured broker (a server: Redis or RabbitMQ), and routes every task this
process sends to that queue. Beat's periodic work is sent there too. The clock only moves on
once the task ledger (``tms_console.simtasks``) holds no pending task: every task an instant
caused, and every task those sent, has run at that instant. A task that raised stops the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from celery import current_app
from django.conf import settings

from missions.simulation.transport import TransportError, child_env, process_stop
from tms_console import simclock, simtasks

TASKS = ("eager", "worker")
START_SECONDS = 90.0  # the worker's start-up: importing the product and connecting to the broker
SETTLE_SECONDS = 120.0  # the longest an instant's tasks may take before the run gives up


class Tasks(Protocol):
    def clock_to(self, now: datetime) -> None:
        """Move the clock of the processes that run tasks to ``now``."""

    def run(self, task: Any, **kwargs: Any) -> None:
        """Beat's work: run ``task`` now, or send it to the worker."""

    def settle(self) -> None:
        """Return once every task sent so far has run."""

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def child_env(self) -> dict[str, str]:
        """What the run's server processes add to their environment to send their tasks the same way."""


class Eager:
    def clock_to(self, now: datetime) -> None:
        return None

    def run(self, task: Any, **kwargs: Any) -> None:
        task(**kwargs)

    def settle(self) -> None:
        return None

    def close(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {"name": "eager"}

    def child_env(self) -> dict[str, str]:
        return {}  # servers run their subscribers eagerly before they answer


class Worker:
    def __init__(self, *, out: Path, start: datetime, run: str) -> None:
        broker = str(settings.CELERY_BROKER_URL)
        if not broker.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
            scheme = broker.split(":", 1)[0]
            raise TransportError(
                f"a worker of the run's own needs a broker server (REDIS_URL or CELERY_BROKER_URL), not {scheme}"
            )
        self.queue = f"sim-{run}"
        self.clock_file = out / "clock"
        self.ledger = out / "tasks"
        shutil.rmtree(self.ledger, ignore_errors=True)
        simclock.clock_write(self.clock_file, start)
        self._instant = start
        simtasks.install(self.ledger)
        self._published_before = simtasks.published()
        self._route(self.queue)
        self._started = time.monotonic()
        self._first = True
        self._log = (out / "worker.log").open("wb")
        self._broker = broker
        env = child_env(self.clock_file) | self.child_env()
        command = [sys.executable, "-m", "celery", "-A", "tms_console", "worker", "--pool", "solo", "-Q", self.queue,
                   "--without-mingle", "--without-gossip", "--without-heartbeat", "--loglevel", "WARNING"]  # fmt: skip
        # A fixed argv of the project's own worker; nothing in it comes from input.
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603  # nosec B603
            command, cwd=settings.BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def _route(self, queue: str | None) -> None:
        """Send every task of this process to ``queue`` (None: back to the routes it had)."""
        amqp = current_app.amqp
        if queue is not None:
            self._routes_before = current_app.conf.task_routes
        current_app.conf.task_routes = {"*": {"queue": queue}} if queue else self._routes_before
        amqp.flush_routes()
        amqp.router = amqp.Router()  # type: ignore[misc]  # kombu's cached_property stores what is set

    def clock_to(self, now: datetime) -> None:
        if now != self._instant:
            simclock.clock_write(self.clock_file, now)
            self._instant = now
            time.sleep(simclock.clock_settle_seconds())

    def run(self, task: Any, **kwargs: Any) -> None:
        kwargs.pop("now", None)  # the worker's clock is at the instant already
        task.delay(**kwargs)

    def settle(self) -> None:
        limit = START_SECONDS if self._first else SETTLE_SECONDS
        deadline = time.monotonic() + limit
        pause = 0.0005
        while True:
            failed = simtasks.failures(self.ledger)
            if failed:
                raise TransportError("a task failed in the run's worker: " + "; ".join(failed[:5]))
            waiting = simtasks.pending(self.ledger)
            if not waiting:
                break
            if self._process is None or self._process.poll() is not None:
                raise TransportError(f"the run's worker exited ({self._exit_code()}); see worker.log")
            if time.monotonic() > deadline:
                raise TransportError(f"tasks still pending after {limit:.0f} s: " + "; ".join(waiting[:5]))
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        self._first = False

    def _exit_code(self) -> str:
        return "not started" if self._process is None else f"exit code {self._process.returncode}"

    def child_env(self) -> dict[str, str]:
        return {"CELERY_TASK_ALWAYS_EAGER": "false", "CELERY_BROKER_URL": self._broker,
                "CELERY_TASK_DEFAULT_QUEUE": self.queue, "TMS_SIM_TASKS_DIR": str(self.ledger)}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        return {"name": "worker", "queue": self.queue, "tasks_sent": simtasks.published() - self._published_before}

    def close(self) -> None:
        process_stop(self._process)
        self._process = None
        self._route(None)
        simtasks.uninstall()
        self._log.close()


def tasks_for(name: str, *, out: Path | None, start: datetime, run: str) -> Tasks:
    if name == "eager":
        return Eager()
    if name != "worker":
        raise ValueError(f"Unknown task mode '{name}'; choose one of {', '.join(TASKS)}.")
    if out is None:
        raise ValueError("a worker of the run's own needs a directory for its clock file, task ledger and log")
    return Worker(out=out, start=start, run=run)
