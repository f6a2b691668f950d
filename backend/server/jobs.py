"""Jobs and the queue that shares the worker fairly between clients."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from ..engine.config.reconstruction import ReconstructionConfig

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass
class Job:
    id: str
    client: bytes
    """ZeroMQ identity of the client that submitted it (results go there and nowhere else)."""
    owner: str
    """Who may cancel, list and fetch it: the client's CURVE key, or its routing id without CURVE."""
    result_owner: str
    """The owner its kept result is filed under (empty without CURVE: the job id is the key)."""
    tag: str
    detached: bool
    points: np.ndarray
    normals: np.ndarray | None
    colours: np.ndarray | None
    config: ReconstructionConfig
    state: str = QUEUED
    iteration: int = 0
    total: int = 0
    """Steps over all of its fields, as its last progress event counted them (0: none yet)."""
    submitted: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    cancel_requests: list[str] = field(default_factory=list)
    """``msg_id`` of each ``cancel_job`` not yet answered: its ``job_cancelled`` (or, when the job
    ended otherwise first, its ``error``) names it as ``parent``."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def request_cancel(self, reason: str, request: str = "") -> bool:
        """Ask the job to stop, for ``reason``, on behalf of the ``cancel_job`` ``request`` (``""``:
        the backend's own decision). False when the job has already ended."""
        with self._lock:
            if self.state in FINISHED:
                return False
            self.cancel_reason = reason
            if request:
                self.cancel_requests.append(request)
            self.cancel.set()
            return True

    def end(self, state: str) -> list[str]:
        """Record that the job ended in ``state``; return the cancel requests still unanswered."""
        with self._lock:
            self.state = state
            answered, self.cancel_requests = self.cancel_requests, []
            return answered

    def release_input(self) -> None:
        """Drop the cloud once the job has ended, so finished jobs hold no large arrays."""
        self.points = np.zeros((0, 3), np.float32)
        self.normals = None
        self.colours = None


class FairQueue:
    """Round-robin over clients, first-in first-out within a client.

    A client that queues a hundred jobs delays another client's single job by at most the one
    job that is running, not by the hundred. ``slots`` jobs run at once (one per worker); the
    queue counts those taken and not yet :meth:`done`, so it knows when a new job starts at once.
    """

    def __init__(self, slots: int = 1) -> None:
        self._lanes: OrderedDict[bytes, deque[Job]] = OrderedDict()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.slots = slots
        """Jobs that run at once: the number of workers taking from this queue."""
        self._running = 0

    def put(self, job: Job) -> int:
        """Queue ``job``; return its ``queue_position``: 0 when a slot is free for it now, else
        how many jobs must start before it, counting the one that starts when a slot frees."""
        with self._lock:
            lane = self._lanes.setdefault(job.client, deque())
            lane.append(job)
            position = max(0, self._position(job) + 1 - (self.slots - self._running))
            self._ready.notify()
            return position

    def done(self) -> None:
        """A job taken with :meth:`get` has ended: its slot is free."""
        with self._lock:
            self._running = max(0, self._running - 1)

    def _position(self, job: Job) -> int:
        depth = len(self._lanes[job.client]) - 1
        # every other client with work gets one turn per turn of this client
        return depth + sum(min(len(lane), depth + 1) for c, lane in self._lanes.items() if c != job.client)

    def get(self, timeout: float) -> Job | None:
        """The next job, or ``None`` after ``timeout`` seconds without one."""
        with self._lock:
            if not self._lanes:
                self._ready.wait(timeout)
            if not self._lanes:
                return None
            client, lane = next(iter(self._lanes.items()))
            job = lane.popleft()
            self._running += 1
            del self._lanes[client]
            if lane:
                self._lanes[client] = lane  # back of the rotation
            return job

    def remove(self, job: Job) -> bool:
        with self._lock:
            lane = self._lanes.get(job.client)
            if lane is None or job not in lane:
                return False
            lane.remove(job)
            if not lane:
                del self._lanes[job.client]
            return True

    def __len__(self) -> int:
        with self._lock:
            return sum(len(lane) for lane in self._lanes.values())
