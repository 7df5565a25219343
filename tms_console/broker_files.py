"""Celery's embedded broker (``CELERY_BROKER_URL=filesystem://``): kombu's filesystem transport,
with every message appearing in the queue folder whole.

kombu writes a message by opening its final file name and then writing into it,
and the consumer does not take the writer's lock, so a worker polling at that
moment reads an empty file, fails to decode it and stops ("Unrecoverable
error: JSONDecodeError"), which stops every process of ``make run``. Here the
message is written under a name no queue reads, then renamed into place:
``os.replace`` is atomic within a folder, so a reader sees no file or the
whole message.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        folder = self.data_folder_out
        final = os.path.join(folder, f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg")
        # A leading dot and no ".msg": the consumer only reads "<stamp>_<id>.<queue>.msg".
        partial = os.path.join(folder, f".{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
