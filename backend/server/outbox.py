"""What the backend has to say to each client, held back when a client does not read.

The ROUTER socket is set to report a full send queue (``ZMQ_ROUTER_MANDATORY`` and a small
high-water mark) instead of dropping messages silently. What it cannot take waits here, per
client, under one rule that keeps the memory bounded however long a client stops reading: a
newer preview of a job replaces the older one still waiting, and the final mesh replaces them
all. Progress, errors, the final mesh and ``job_done`` are never dropped while the client is
known; they go out in order once it reads again.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import zmq

log = logging.getLogger(__name__)

PREVIEW = b"preview"
FINAL = b"final"
OTHER = b"other"


@dataclass
class Pending:
    kind: bytes
    job: bytes
    frames: list[Any]

    @property
    def nbytes(self) -> int:
        return sum(len(memoryview(f.buffer if hasattr(f, "buffer") else f)) for f in self.frames)


class Outbox:
    def __init__(self, router: Any) -> None:
        self.router = router
        self.pending: dict[bytes, deque[Pending]] = {}
        self.coalesced = 0
        """Previews replaced before they could be sent (a measure of slow readers)."""
        self.peak_bytes = 0
        """Most bytes ever held here at once."""

    def send(self, identity: bytes, frames: list[Any], kind: bytes = OTHER, job: bytes = b"") -> None:
        queue = self.pending.get(identity)
        if queue is None and self._try_send(identity, frames):
            return
        if queue is None:
            queue = self.pending[identity] = deque()
        if kind in (PREVIEW, FINAL):
            kept = deque(p for p in queue if not (p.kind == PREVIEW and p.job == job))
            self.coalesced += len(queue) - len(kept)
            queue.clear()
            queue.extend(kept)
        queue.append(Pending(kind, job, frames))
        self.peak_bytes = max(self.peak_bytes, self.held_bytes())

    def _try_send(self, identity: bytes, frames: list[Any]) -> bool:
        try:
            self.router.send_multipart([identity, *frames], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:  # not connected now (dropped link): hold it
                return False
            raise

    def flush(self) -> None:
        """Send what the socket takes now, oldest first, client by client."""
        for identity in list(self.pending):
            queue = self.pending[identity]
            while queue and self._try_send(identity, queue[0].frames):
                queue.popleft()
            if not queue:
                del self.pending[identity]

    def forget(self, identity: bytes) -> None:
        """Drop everything held for a client that is gone for good."""
        queue = self.pending.pop(identity, None)
        if queue:
            log.info("dropped %d undelivered messages for gone client %s", len(queue), identity.hex())

    def held_bytes(self) -> int:
        return sum(p.nbytes for queue in self.pending.values() for p in queue)

    def __bool__(self) -> bool:
        return bool(self.pending)
