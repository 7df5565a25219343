"""The Celery app.

Request and correlation ids travel in the task message headers: the publisher
copies them from its context variables (``before_task_publish``), the worker
puts them back into its own context variables for the duration of the task
(``task_prerun`` / ``task_postrun``), so every log line a task writes carries
the id of the request that caused it.

SIGTERM: the worker stops taking tasks and exits within ``WORKER_DRAIN_SECONDS``,
beat within ``BEAT_DRAIN_SECONDS`` (``_worker_drain_deadline``, ``_beat_drain_deadline``).
"""

from __future__ import annotations

import ctypes
import logging
import logging.config
import os
import signal
import threading
import time
from contextvars import Token
from types import FrameType
from typing import Any

from celery import Celery, Task, signals

from tms_console import tracing
from tms_console.logging import correlation_id_var, request_id_var
from tms_console.shutdown import BEAT_DRAIN_SECONDS, exit_deadline

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")

app = Celery("tms_console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("tms_console.celery")

# Header names on the wire; kept short and namespaced so they cannot collide
# with Celery's own protocol headers.
REQUEST_ID_HEADER = "tms_request_id"
CORRELATION_ID_HEADER = "tms_correlation_id"

_TOKENS_ATTR = "_tms_context_tokens"


@signals.setup_logging.connect
def _use_django_logging(**_: Any) -> None:
    """Keep the JSON-lines configuration from settings.LOGGING in worker and beat.

    Connecting this signal stops Celery from replacing the root handlers with
    its own plain-text format.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.worker_init.connect
def _trace_worker(sender: Any = None, **_: Any) -> None:
    """Tracing in a worker whose tasks run in this process (threads, solo); prefork waits for the fork."""
    pool = str(getattr(sender, "pool_cls", "") or "")
    if "prefork" not in pool and pool not in {"", "processes"}:
        tracing.configure("worker")


@signals.worker_process_init.connect
def _trace_worker_child(**_: Any) -> None:
    # After the fork: the batch span processor's thread and lock do not survive one.
    tracing.configure("worker")


@signals.beat_init.connect
def _trace_beat(**_: Any) -> None:
    tracing.configure("beat")


@signals.worker_shutdown.connect
@signals.worker_process_shutdown.connect
def _trace_flush(**_: Any) -> None:
    tracing.shutdown()  # exports what is buffered before the process goes


@signals.before_task_publish.connect
def _attach_ids(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Copy the publisher's request / correlation ids into the message headers."""
    if headers is None:
        return
    request_id = request_id_var.get()
    correlation_id = correlation_id_var.get()
    if request_id and not headers.get(REQUEST_ID_HEADER):
        headers[REQUEST_ID_HEADER] = request_id
    if correlation_id and not headers.get(CORRELATION_ID_HEADER):
        headers[CORRELATION_ID_HEADER] = correlation_id


def _header(task: Task[Any, Any], name: str) -> str | None:
    request = task.request
    value = getattr(request, name, None)
    if value is None:
        # Depending on how the task was sent the custom headers land either
        # as attributes of the request context or in its ``headers`` dict.
        headers = getattr(request, "headers", None) or {}
        value = headers.get(name)
    return str(value) if value else None


@signals.task_prerun.connect
def _restore_ids(task: Task[Any, Any] | None = None, **_: Any) -> None:
    """Put the ids from the message back into context for the task's log lines.

    An eager task (tests, CELERY_TASK_ALWAYS_EAGER) runs inside the caller's
    context and has no headers: it keeps the caller's ids instead of losing
    them. The tokens are reset after the task so a worker thread never leaks
    one task's ids into the next.
    """
    if task is None:
        return
    request_id = _header(task, REQUEST_ID_HEADER) or request_id_var.get()
    correlation_id = _header(task, CORRELATION_ID_HEADER) or correlation_id_var.get()
    tokens = (request_id_var.set(request_id), correlation_id_var.set(correlation_id))
    setattr(task.request, _TOKENS_ATTR, tokens)


@signals.task_postrun.connect
def _reset_ids(task: Task[Any, Any] | None = None, **_: Any) -> None:
    if task is None:
        return
    tokens: tuple[Token[str | None], Token[str | None]] | None = getattr(task.request, _TOKENS_ATTR, None)
    if tokens is None:
        return
    try:
        request_id_var.reset(tokens[0])
        correlation_id_var.reset(tokens[1])
    except ValueError:
        # Created in another context (a task that switched threads): nothing to undo here.
        pass
    setattr(task.request, _TOKENS_ATTR, None)


@app.task(name="tms_console.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Record the ``worker`` heartbeat: proof that beat, the broker and a worker all work.

    Scheduled by beat every CELERY_HEARTBEAT_SECONDS (0 turns it off). ``/readyz`` and
    the safety ticker read its age (``tms_console.health``).
    """
    from tms_console.health import heartbeat_record  # needs the app registry, loaded after this module

    logger.info("celery heartbeat", extra={"event": "celery.heartbeat"})
    heartbeat_record(name="worker", detail={"hostname": str(heartbeat.request.hostname or "")})
    return "ok"


def _beat_heartbeats(seconds: float) -> None:
    from django.db import connection

    from tms_console.health import heartbeat_record

    while True:
        try:
            heartbeat_record(name="beat", detail={"pid": os.getpid()})
        except Exception:  # the database may be down too; try again next period
            logger.warning("beat heartbeat not recorded", exc_info=True)
            connection.close()
        time.sleep(seconds)


@signals.beat_init.connect
def _start_beat_heartbeat(**_: Any) -> None:
    """The beat process notes it is alive on its own, so a dead scheduler shows apart from a dead broker."""
    from django.conf import settings

    seconds = float(getattr(settings, "CELERY_HEARTBEAT_SECONDS", 0) or 0)
    if seconds > 0:
        threading.Thread(target=_beat_heartbeats, args=(seconds,), name="beat-heartbeat", daemon=True).start()


@signals.beat_init.connect
def _beat_drain_deadline(**_: Any) -> None:
    """Beat saves its schedule and exits on SIGTERM; the deadline makes sure it is within BEAT_DRAIN_SECONDS.

    Celery installs its own SIGTERM handler (save the schedule, raise SystemExit) before this
    signal; it stays, wrapped.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # an embedded beat (worker -B): the worker's own deadline covers it
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        exit_deadline(BEAT_DRAIN_SECONDS, process="celery-beat")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


class TaskInterrupted(BaseException):
    """Raised inside a task still running when the worker's drain time is up: its message goes back on the queue.

    Not an ``Exception``: the task's own handlers do not catch it, and Celery takes it as a lost
    worker (``WorkerLostError``), which with ``acks_late`` and ``reject_on_worker_lost`` (both on
    for every task) requeues the message.
    """


# The thread running each task (the thread pool), so the drain can interrupt the ones still running.
_task_threads: dict[str, int] = {}
# What Celery's own warm shutdown needs once the last task is over: acknowledgements sent from its
# event loop, the broker connection closed (a message in the middle of its delivery is put back).
WORKER_SHUTDOWN_SECONDS = 2.0


@signals.task_prerun.connect
def _note_task_thread(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_threads[task_id] = threading.get_ident()


@signals.task_postrun.connect
def _forget_task_thread(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_threads.pop(task_id, None)


@signals.worker_shutting_down.connect
def _worker_drain_deadline(**_: Any) -> None:
    """SIGTERM (warm shutdown): the worker takes no new task and lets the running ones finish, within
    WORKER_DRAIN_SECONDS.

    Celery's warm shutdown waits for them without a limit (a thread cannot be stopped). When the
    drain time is nearly up (``WORKER_SHUTDOWN_SECONDS`` before it), a task still running is
    interrupted with ``TaskInterrupted``, so its message goes back on the queue (every task is safe
    to run twice) and Celery finishes its own shutdown: the acknowledgements of the finished tasks
    are sent, and a message the broker had just handed over is put back. The process exits by
    itself; ``tms_console.shutdown.exit_deadline`` ends it at the drain time if a task cannot be
    interrupted (a thread blocked in a call that does not return).
    """
    from django.conf import settings

    seconds = float(settings.WORKER_DRAIN_SECONDS)
    deadline = exit_deadline(seconds, process="celery-worker")
    interrupt_at = deadline - min(WORKER_SHUTDOWN_SECONDS, seconds / 3)
    threading.Thread(target=_interrupt_running, args=(interrupt_at,), name="worker-drain", daemon=True).start()


def _interrupt_running(when: float) -> None:
    from celery.worker import state

    while (left := when - time.monotonic()) > 0:
        time.sleep(left)
    interrupted = []
    for request in list(state.active_requests):
        ident = _task_threads.get(request.id)
        if request.acknowledged or ident is None:
            continue
        # CPython's documented hook for raising an exception in another thread; it takes effect
        # at the thread's next Python instruction (a blocking call is not cut short).
        if ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TaskInterrupted)):
            interrupted.append(f"{request.name}[{request.id}]")
    if interrupted:
        logger.warning(
            "drain time nearly over: tasks still running are interrupted and go back on the queue",
            extra={"event": "shutdown.requeued", "component": "celery-worker", "tasks": interrupted},
        )


@app.on_after_configure.connect
def _schedule_heartbeat(sender: Celery, **_: Any) -> None:
    from django.conf import settings

    seconds = float(getattr(settings, "CELERY_HEARTBEAT_SECONDS", 0) or 0)
    if seconds > 0:
        sender.add_periodic_task(seconds, heartbeat.s(), name="tms_console.heartbeat")
