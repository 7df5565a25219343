#!/usr/bin/env python
"""Start and supervise every process of the product for `make run`.

Children: daphne (web: the console and websockets), gunicorn (partner: the
partner HTTP API and webhooks on PARTNER_PORT, README "Scaling"), Celery
worker, Celery beat, and the optional processes listed in OPTIONAL_PROCESSES
whose management command exists.
Each child's output is prefixed with its name. Ctrl-C (SIGINT) or SIGTERM
stops every child: each gets SIGTERM and drains (README, "Graceful
shutdown"); a child still running after its stated drain time (plus
KILL_MARGIN_SECONDS to be reaped) is killed with SIGKILL, and the supervisor
says which one needed it. If one child dies on its own, the others are
stopped too and the exit status says which.

Run from the project root with the project's interpreter:
    .venv/bin/python scripts/run_all.py
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BASE_DIR = Path(__file__).resolve().parent.parent
# A child exits by itself within its drain time; this much more is left for the system to reap it.
KILL_MARGIN_SECONDS = 2.0
# The drain time of a child that states none.
DEFAULT_DRAIN_SECONDS = 10.0
# Exit status of a child that ended itself at its drain deadline (tms_console.shutdown.EXIT_DRAIN_EXPIRED).
EXIT_DRAIN_EXPIRED = 70
READY_TIMEOUT_SECONDS = 60.0
# The partner server's gthread workers and threads per worker (README, "Scaling").
PARTNER_WORKERS = 2
PARTNER_THREADS = 32
PARTNER_DB_POOL_MAX = 40  # above PARTNER_THREADS, as deploy/k8s/base/partner-ingest.yaml


@dataclass(frozen=True)
class ProcessSpec:
    """One supervised child: a name for the output prefix and its argv."""

    name: str
    argv: list[str]
    # Extra environment for this child only.
    env: dict[str, str] = field(default_factory=dict)
    # Start only once the web server accepts connections (a client of it).
    after_web: bool = False
    # How long it may take to exit after SIGTERM (its stated drain time) before it is killed.
    drain_seconds: float = DEFAULT_DRAIN_SECONDS


@dataclass(frozen=True)
class OptionalProcess:
    """A process that runs only when its management command exists and `enabled()` says so.

    Add an entry to OPTIONAL_PROCESSES to have `make run` start another
    management command next to the web server and the Celery processes.
    """

    name: str
    command: str
    # Arguments, given the host and port the web server listens on.
    args: Callable[[str, int], list[str]] = lambda host, port: []
    enabled: Callable[[], bool] = lambda: True
    after_web: bool = False
    # Simulators log every request they make; keep the shared console readable
    # unless LOG_LEVEL asks for more.
    log_level: str = "WARNING"
    # Its drain time after SIGTERM (read once the settings are loaded).
    drain_seconds: Callable[[], float] = lambda: DEFAULT_DRAIN_SECONDS


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _simulator_drain() -> float:
    from tms_console.shutdown import SIMULATOR_DRAIN_SECONDS

    return SIMULATOR_DRAIN_SECONDS


def _mqtt_drain() -> float:
    from django.conf import settings

    return float(settings.MQTT_DRAIN_SECONDS)


def _bus_drain() -> float:
    from missions.management.commands.events_relay import DRAIN_SECONDS

    return DRAIN_SECONDS


OPTIONAL_PROCESSES: list[OptionalProcess] = [
    OptionalProcess(
        name="carriers",
        command="run_carrier_sim",
        args=lambda host, port: ["--port", _env("CARRIER_SIM_PORT", "8100")],
        drain_seconds=_simulator_drain,
    ),
    OptionalProcess(
        name="fleet",
        command="simulate_fleet",
        # --demo: the simulator issues its own partner API clients, and posts to the partner server.
        args=lambda host, port: [
            "--demo",
            "--console-url",
            os.environ.get("PARTNER_BASE_URL") or f"http://{host}:{port}",
        ],
        after_web=True,
        drain_seconds=_simulator_drain,
    ),
    OptionalProcess(
        # The demo's on-call pager: started when the console pages it (see demo_pager_default).
        name="pager",
        command="run_pager_sim",
        args=lambda host, port: ["--port", _env("PAGER_SIM_PORT", "8101")],
        enabled=lambda: os.environ.get("PAGERDUTY_EVENTS_URL", "") == _demo_pager_url(),
    ),
    OptionalProcess(
        name="mqtt",
        command="mqtt_ingest",
        enabled=lambda: bool(os.environ.get("MQTT_URL")),
        log_level="INFO",
        drain_seconds=_mqtt_drain,
    ),
    OptionalProcess(
        # The event bus relay (missions.bus): only with a NATS server to publish to.
        name="bus",
        command="events_relay",
        enabled=lambda: bool(os.environ.get("NATS_URL")),
        log_level="INFO",
        drain_seconds=_bus_drain,
    ),
]


def _demo_pager_url() -> str:
    return f"http://127.0.0.1:{_env('PAGER_SIM_PORT', '8101')}/v2/enqueue"


def demo_pager_default(commands: set[str]) -> str | None:
    """With no PagerDuty configured, page the local pager (every child inherits the setting)."""
    if os.environ.get("PAGERDUTY_EVENTS_URL") or "run_pager_sim" not in commands:
        return None
    os.environ["PAGERDUTY_EVENTS_URL"] = _demo_pager_url()
    os.environ.setdefault("PAGERDUTY_ROUTING_KEY", "demo-routing-key")
    return _demo_pager_url().removesuffix("/v2/enqueue") + "/pages"


def partner_base_url_default(host: str, partner_port: int | None) -> None:
    """Carriers and the simulators reach the partner API on the partner server (every child inherits it)."""
    if partner_port:
        os.environ.setdefault("PARTNER_BASE_URL", f"http://{host}:{partner_port}")


def demo_egress_default() -> None:
    """Let the demo certify carriers against the carrier simulator on this machine (unless the operator chose)."""
    os.environ.setdefault("EGRESS_ALLOWED_NETWORKS", "127.0.0.1/32")


def access_log() -> str:
    from django.conf import settings

    return str(Path(settings.VAR_DIR) / "access.log")


def available_commands() -> set[str]:
    """Names of the management commands of the installed apps."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")
    sys.path.insert(0, str(BASE_DIR))
    import django
    from django.core.management import get_commands

    django.setup()
    return set(get_commands())


def partner_spec(*, host: str, port: int, drain_seconds: float) -> ProcessSpec:
    """gunicorn serving tms_console.wsgi (the partner API and webhooks) as the partner-ingest deployment does."""
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    argv = [
        gunicorn,
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(PARTNER_WORKERS),
        "--worker-class",
        "tms_console.gunicorn_worker.ProblemThreadWorker",
        "--threads",
        str(PARTNER_THREADS),
        "--limit-request-line",
        "8190",
        "--graceful-timeout",
        f"{drain_seconds:g}",
        "tms_console.wsgi:application",
    ]
    # Each worker's threads share its database pool (PostgreSQL): more connections than threads, as the
    # partner-ingest deployment sets it, so no thread waits for one.
    return ProcessSpec("partner", argv, env={"DB_POOL_MAX": str(PARTNER_DB_POOL_MAX)}, drain_seconds=drain_seconds)


def build_specs(*, host: str, port: int, commands: set[str], partner_port: int | None = None) -> list[ProcessSpec]:
    from django.conf import settings

    from tms_console.shutdown import BEAT_DRAIN_SECONDS

    python = sys.executable
    bindir = Path(python).parent
    celery = str(bindir / "celery")
    daphne = str(bindir / "daphne")
    worker = [celery, "-A", "tms_console", "worker", "--pool=threads", "--concurrency=4", "--loglevel=INFO"]
    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        # One local worker and no broker server: nothing to synchronise with
        # or gossip to, and each of these would otherwise poll files.
        worker += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    specs = [
        # One access-log line per request (the fleet simulator posts several a
        # second) goes to a file, not to the shared console.
        ProcessSpec(
            "web",
            [daphne, "-b", host, "-p", str(port), "--access-log", access_log(), "tms_console.asgi:application"],
            drain_seconds=float(settings.WEB_DRAIN_SECONDS),
        ),
        *(
            [partner_spec(host=host, port=partner_port, drain_seconds=float(settings.WEB_DRAIN_SECONDS))]
            if partner_port
            else []
        ),
        ProcessSpec("worker", worker, drain_seconds=float(settings.WORKER_DRAIN_SECONDS)),
        ProcessSpec(
            "beat",
            [celery, "-A", "tms_console", "beat", "--loglevel=INFO", "-s", str(settings.CELERY_BEAT_SCHEDULE_FILENAME)],
            drain_seconds=BEAT_DRAIN_SECONDS,
        ),
    ]
    manage = str(BASE_DIR / "manage.py")
    for extra in OPTIONAL_PROCESSES:
        if extra.command in commands and extra.enabled():
            argv = [python, manage, extra.command, *extra.args(host, port)]
            env = {"LOG_LEVEL": os.environ.get("LOG_LEVEL", extra.log_level)}
            specs.append(
                ProcessSpec(extra.name, argv, env=env, after_web=extra.after_web, drain_seconds=extra.drain_seconds())
            )
    return specs


class Supervisor:
    """Runs the children, relays their output, and stops them all together."""

    def __init__(self, specs: Sequence[ProcessSpec], *, out: IO[str] = sys.stdout) -> None:
        self.specs = list(specs)
        self.out = out
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._width = max(len(s.name) for s in self.specs)
        self._threads: list[threading.Thread] = []

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self._width}} | {line}\n")
            self.out.flush()

    def start(self, *, after_web: bool = False) -> None:
        """Start the children of one wave: those that need the web server, or the others."""
        for spec in self.specs:
            if spec.after_web != after_web:
                continue
            # Each process names itself in its traces, unless the operator named them all.
            env = {"OTEL_SERVICE_NAME": spec.name, **os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
            # A session of its own per child: the terminal's Ctrl-C reaches
            # only this supervisor, which then stops the children in order.
            proc = subprocess.Popen(
                spec.argv,
                cwd=BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.children[spec.name] = proc
            self.say("run", f"started {spec.name} (pid {proc.pid}): {' '.join(spec.argv[1:])}")
            assert proc.stdout is not None
            thread = threading.Thread(target=self._relay, args=(spec.name, proc.stdout), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _relay(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> list[str]:
        """SIGTERM every child's process group; kill a child still running after its drain time.

        Returns the names of the children that had to be killed.
        """
        if self._stopping.is_set():
            return []
        self._stopping.set()
        drains = {spec.name: spec.drain_seconds for spec in self.specs}
        started = time.monotonic()
        running = {name: proc for name, proc in self.children.items() if proc.poll() is None}
        for name, proc in reversed(list(running.items())):
            self.say("run", f"stopping {name} (pid {proc.pid}; drain time {drains[name]:g}s)")
            _signal_group(proc, signal.SIGTERM)
        killed = []
        while running:
            for name, proc in list(running.items()):
                code = proc.poll()
                took = time.monotonic() - started
                if code is None and took < drains[name] + KILL_MARGIN_SECONDS:
                    continue
                del running[name]
                if code is None:
                    drain = f"{drains[name]:g}s"
                    self.say("run", f"{name} did not stop within its drain time ({drain}); killing it (SIGKILL)")
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
                    killed.append(name)
                elif code == EXIT_DRAIN_EXPIRED:
                    self.say("run", f"{name} ended itself at its drain deadline ({took:.1f}s after SIGTERM)")
                else:
                    self.say("run", f"{name} stopped ({took:.1f}s after SIGTERM)")
            time.sleep(0.05)
        for proc in self.children.values():
            # Grandchildren in a child's group (if any) go with it.
            _signal_group(proc, signal.SIGKILL)
        for thread in self._threads:
            thread.join(timeout=2)
        return killed


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group may be gone already: the child exited and nothing else was in it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def wait_for_port(host: str, port: int, *, timeout: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def banner(
    url: str, access_log_path: str | None = None, pages_url: str | None = None, partner_url: str | None = None
) -> str:
    lines = [f"  Partner API and webhooks (gunicorn): {partner_url}"] if partner_url else []
    if access_log_path:
        lines.append(f"  Web access log: {access_log_path}")
    if pages_url:
        lines.append(f"  Pages to on-call (local pager): {pages_url}")
    return "\n".join(
        [
            "",
            "=" * 72,
            f"  TMS Console is running: {url}",
            "  Log in with a demo user and password printed by `manage.py seed_demo`,",
            "  then enter the one-time code from your authenticator app (scan or type",
            "  the TOTP secret shown at seeding) or print the current code with:",
            "      make otp OTP_USER=<username>",
            "  or  DEBUG=1 .venv/bin/python manage.py demo_otp <username>",
            *lines,
            "  Press Ctrl-C to stop every process.",
            "=" * 72,
            "",
        ]
    )


def main() -> int:
    host = _env("HOST", "127.0.0.1")
    port = int(_env("PORT", "8000"))
    # 0: no partner server; daphne serves the partner API too.
    partner_port = int(_env("PARTNER_PORT", "8001")) or None
    for name, value in (("PORT", port), ("PARTNER_PORT", partner_port)):
        if value and not port_is_free(host, value):
            print(
                f"run: port {value} on {host} is already in use; set {name}=<free port> and try again.", file=sys.stderr
            )
            return 2
    partner_base_url_default(host, partner_port)
    demo_egress_default()
    commands = available_commands()
    pages_url = demo_pager_default(commands)
    specs = build_specs(host=host, port=port, commands=commands, partner_port=partner_port)
    return run(
        specs, host=host, port=port, access_log_path=access_log(), pages_url=pages_url, partner_port=partner_port
    )


def run(
    specs: Sequence[ProcessSpec],
    *,
    host: str,
    port: int,
    access_log_path: str | None = None,
    pages_url: str | None = None,
    partner_port: int | None = None,
) -> int:
    """Start the children, announce the URLs once "web" (and "partner") listen, stop all on a signal or a death.

    The children that are clients of the servers (``after_web``) start only then.
    """
    started = time.monotonic()
    supervisor = Supervisor(specs)
    stop_reason: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_reason.append(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    supervisor.start()
    url = f"http://{host}:{port}/"
    partner_url = f"http://{host}:{partner_port}/api/v1/" if partner_port else None
    # Each server must listen before the clients start: (port, its process).
    servers = [(port, supervisor.children["web"])]
    if partner_port:
        servers.append((partner_port, supervisor.children["partner"]))
    listening: set[int] = set()
    announced = False
    exit_code = 0
    try:
        while not stop_reason:
            for server_port, proc in servers:
                if server_port not in listening and wait_for_port(
                    host, server_port, timeout=0.25, alive=functools.partial(_running, proc)
                ):
                    listening.add(server_port)
            if not announced and len(listening) == len(servers):
                supervisor.say("run", banner(url, access_log_path, pages_url, partner_url))
                announced = True
                supervisor.start(after_web=True)
            exited = supervisor.first_exited()
            if exited is not None:
                name, code = exited
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
                supervisor.say("run", f"ERROR: {name} {how} unexpectedly; stopping everything.")
                exit_code = 1
                break
            if not announced and time.monotonic() - started > READY_TIMEOUT_SECONDS:
                supervisor.say(
                    "run",
                    f"ERROR: the web servers did not listen on ports {', '.join(str(p) for p, _ in servers)}"
                    f" of {host} within {READY_TIMEOUT_SECONDS:.0f}s.",
                )
                exit_code = 1
                break
            time.sleep(0.3)
        else:
            supervisor.say("run", f"received {stop_reason[0]}; stopping every process")
    finally:
        # Further Ctrl-Cs during shutdown must not interrupt the cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        killed = supervisor.stop()
    if killed:
        supervisor.say("run", f"all processes stopped; killed after their drain time: {', '.join(killed)}")
    else:
        supervisor.say("run", "all processes stopped, each within its drain time")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
