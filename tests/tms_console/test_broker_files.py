"""The embedded broker writes each message whole: a worker polling the folder never reads half a message."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from kombu import Connection

from tms_console.broker_files import Transport
from tms_console.celery import app


def _connection(folder: Path) -> Connection:
    return Connection(
        "filesystem://",
        transport=Transport,
        transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False},
    )


def test_the_embedded_broker_is_this_transport() -> None:
    if str(app.conf.broker_url).startswith("filesystem://"):
        with app.connection_for_write() as connection:
            assert connection.transport_cls == "tms_console.broker_files:Transport"


def test_a_reader_polling_while_messages_are_written_only_ever_sees_whole_ones(tmp_path: Path) -> None:
    big = {"body": "x" * 200_000}  # large enough that a write is not instantaneous
    stop = threading.Event()
    seen: list[str] = []
    broken: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            for name in os.listdir(tmp_path):
                if name.endswith(".q.msg"):
                    try:
                        text = (tmp_path / name).read_text()
                    except FileNotFoundError:
                        continue
                    seen.append(text)
                    try:
                        json.loads(text)
                    except ValueError as exc:  # a half-written message
                        broken.append(f"{name}: {exc}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with _connection(tmp_path) as connection:
            channel = connection.default_channel
            for _ in range(200):
                channel._put("q", big)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert seen, "the reader saw no message at all"
    assert broken == []
    names = os.listdir(tmp_path)
    assert len([n for n in names if n.endswith(".q.msg")]) == 200
    assert not [n for n in names if n.endswith(".partial")]


def test_messages_written_are_all_delivered_once(tmp_path: Path) -> None:
    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue("q")
        for n in range(3):
            queue.put({"n": n})
        assert sorted(queue.get(timeout=2).payload["n"] for _ in range(3)) == [0, 1, 2]
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".msg")]
        queue.close()
