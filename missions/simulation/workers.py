"""Where a run's Celery tasks run: eagerly in the program's process, or in worker and beat processes of its own.

``Eager`` (the default) runs every task where it is sent, at the instant it is sent, and the
program runs beat's periodic work itself on its profile's cadence. ``Worker`` starts ``celery
worker`` (solo pool) and ``celery beat`` (the product's schedule, ``SimScheduler``) on the run's
database and clock file, on a queue of the run's own on the configured broker (a server: Redis or
RabbitMQ), and routes every task this process sends to that queue. The clock only moves on once
beat has looked at the instant and found nothing more due, and the task ledger
(``tms_console.simtasks``) holds no pending task: every task an instant caused, and every task
those sent, has run at that instant. A task that raised stops the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

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
        """The program's own work (its checkpoints' evaluations): run ``task`` now, or send it to the worker."""

    def beat_work(self, task: Any, **kwargs: Any) -> None:
        """Beat's periodic work at the profile's cadence: run it here, unless a beat of the run's own does."""

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

    def beat_work(self, task: Any, **kwargs: Any) -> None:
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
        self._first = True
        self._broker = broker
        env = child_env(self.clock_file) | self.child_env()
        self._logs: list[IO[bytes]] = []
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._start("worker", ["worker", "--pool", "solo", "-Q", self.queue, "--without-mingle", "--without-gossip",
                               "--without-heartbeat"], env, out)  # fmt: skip
        self._start("beat", ["beat", "-S", "tms_console.simtasks:SimScheduler"], env, out)

    def _start(self, name: str, arguments: list[str], env: dict[str, str], out: Path) -> None:
        log = (out / f"{name}.log").open("wb")
        self._logs.append(log)
        command = [sys.executable, "-m", "celery", "-A", "tms_console", *arguments, "--loglevel", "WARNING"]
        # A fixed argv of the project's own worker and beat; nothing in it comes from input.
        self._processes[name] = subprocess.Popen(  # noqa: S603  # nosec B603
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

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
        task.delay(**kwargs)

    def beat_work(self, task: Any, **kwargs: Any) -> None:
        return None  # the run's beat sends it, on the product's schedule

    def settle(self) -> None:
        limit = START_SECONDS if self._first else SETTLE_SECONDS
        deadline = time.monotonic() + limit
        pause = 0.0005
        while True:
            failed = simtasks.failures(self.ledger)
            if failed:
                raise TransportError("a task failed in the run's worker: " + "; ".join(failed[:5]))
            waiting = simtasks.pending(self.ledger)
            looked = simtasks.beat_idle(self.ledger)
            if not waiting and looked == self._instant:
                break
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise TransportError(f"the run's {name} exited with {process.returncode}; see {name}.log")
            if time.monotonic() > deadline:
                raise TransportError(
                    f"after {limit:.0f} s beat had looked at {looked} (the clock is at {self._instant}); "
                    f"tasks pending: {'; '.join(waiting[:5]) or 'none'}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        self._first = False

    def child_env(self) -> dict[str, str]:
        # Every periodic check goes through beat and the ledger: beat's own gap-detector thread and the
        # heartbeats (and the web process's safety ticker, which reads them) act on real time, so are off.
        return {"CELERY_TASK_ALWAYS_EAGER": "false", "CELERY_BROKER_URL": self._broker,
                "CELERY_TASK_DEFAULT_QUEUE": self.queue, "TMS_SIM_TASKS_DIR": str(self.ledger),
                "TELEMETRY_GAP_DETECTOR_IN_BEAT": "false", "CELERY_HEARTBEAT_SECONDS": "0"}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        run = Counter(simtasks.ran(self.ledger))
        return {"name": "worker", "queue": self.queue, "tasks_sent": simtasks.published() - self._published_before,
                "tasks_run": sum(run.values()), "tasks_run_by_name": dict(run.most_common())}  # fmt: skip

    def close(self) -> None:
        for process in self._processes.values():
            process_stop(process)
        self._processes.clear()
        self._route(None)
        simtasks.uninstall()
        for log in self._logs:
            log.close()


def tasks_for(name: str, *, out: Path | None, start: datetime, run: str) -> Tasks:
    if name == "eager":
        return Eager()
    if name != "worker":
        raise ValueError(f"Unknown task mode '{name}'; choose one of {', '.join(TASKS)}.")
    if out is None:
        raise ValueError("a worker of the run's own needs a directory for its clock file, task ledger and log")
    return Worker(out=out, start=start, run=run)
