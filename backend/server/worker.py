"""The training worker: runs queued jobs one at a time on its device, in its own thread.

ZeroMQ sockets must not be shared between threads, so the worker never touches the client
socket: it encodes its replies and pushes them, with the client's identity in front, through
an in-process PUSH socket that the front end forwards to the right client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import zmq

from siren_recon.protocol import Error, JobCancelled, JobDone, JobFailed, MeshUpdate, Message, Progress, encode

from ..engine.errors import Cancelled, ReconstructionError
from ..engine.events import MeshEvent, ProgressEvent, ReconstructionResult
from .devices import train_on
from .executors import JobRunner
from .executors.local import run_in_process
from .jobs import CANCELLED, DONE, FAILED, RUNNING, FairQueue, Job
from .outbox import FINAL, OTHER, PREVIEW
from .results import ResultStore, StoredResult

log = logging.getLogger(__name__)


class Worker(threading.Thread):
    def __init__(self, queue: FairQueue, context: zmq.Context, replies: str, session: str,
                 device: str, on_finished: Callable[[Job], None], runner: JobRunner = run_in_process,
                 name: str = "", results: ResultStore | None = None, threads: int = 0) -> None:
        super().__init__(name=name or f"worker-{device}", daemon=True)
        self.runner = runner
        self.results = results
        self.queue = queue
        self.context = context
        self.replies = replies
        """In-process endpoint the front end pulls this worker's replies from."""
        self.session = session
        self.device = device
        self.threads = threads
        """CPU threads of this worker's jobs (see :func:`~siren_recon.server.devices.worker_threads`)."""
        self.on_finished = on_finished
        self.stopping = threading.Event()
        self.current: Job | None = None

    def run(self) -> None:
        push = self.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(self.replies)
        try:
            while not self.stopping.is_set():
                job = self.queue.get(timeout=0.2)
                if job is None:
                    continue
                self.current = job
                try:
                    self._run_job(job, push)
                finally:
                    self.current = None
                    self.queue.done()
                    job.release_input()
                    self._free_device_memory()
                    self.on_finished(job)
        finally:
            push.close()

    def _keep(self, job: Job, mesh: MeshUpdate, result: ReconstructionResult) -> None:
        """File the final mesh for clients that come back for it; a full disk does not fail the job."""
        if self.results is None:
            return
        try:
            self.results.save(StoredResult(
                job=job.id, owner=job.result_owner, tag=job.tag, mode=result.mode, stats=result.stats,
                timings=result.timings, vertices=mesh.vertices, faces=mesh.faces, colours=mesh.colours,
                finished=time.time(), iteration=mesh.iteration, resolution=mesh.resolution,
            ))
        except OSError as exc:
            log.warning("could not keep the result of job %s: %s", job.id, exc)

    def _free_device_memory(self) -> None:
        """Hand the finished job's cached GPU blocks back, so the next job (or process) can use them."""
        if self.device.startswith("cuda"):
            with torch.cuda.device(self.device):
                torch.cuda.empty_cache()
        elif self.device == "auto" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _send(self, push: Any, job: Job, message: Message, kind: bytes = OTHER) -> None:
        push.send_multipart([job.client, kind, job.id.encode(), *encode(message)], copy=False)

    def _cancelled(self, push: Any, job: Job) -> None:
        """End ``job`` as cancelled: one ``job_cancelled`` per ``cancel_job`` that asked (each
        naming it), or one with no parent when the backend itself decided."""
        for request in job.end(CANCELLED) or [""]:
            self._send(push, job, JobCancelled(session=self.session, job=job.id, parent=request,
                                               reason=job.cancel_reason))

    def _ended(self, push: Any, job: Job, state: str, message: Message) -> None:
        """End ``job`` in ``state`` (done or failed) and send its last ``message``; a ``cancel_job``
        that came too late to stop it is then answered ``job_finished``."""
        late = job.end(state)
        self._send(push, job, message)
        for request in late:
            self._send(push, job, Error(session=self.session, job=job.id, parent=request, code="job_finished",
                                        message=f"job {job.id} ended ({state}) before it could be cancelled"))

    def _run_job(self, job: Job, push: Any) -> None:
        if job.cancel.is_set():
            self._cancelled(push, job)
            return
        job.state = RUNNING
        job.config = train_on(job.config, self.device, self.threads)
        log.info("job %s (%s) started: %d points", job.id, job.tag, len(job.points))

        def on_progress(event: ProgressEvent) -> None:
            job.iteration, job.total = event.iteration, event.total
            self._send(push, job, Progress(
                session=self.session, job=job.id, iteration=event.iteration, total=event.total,
                losses=event.losses, iterations_per_second=event.iterations_per_second,
                eta_seconds=event.eta_seconds, mode=event.mode, tile=event.tile, tiles=event.tiles,
            ))

        final: list[MeshUpdate] = []

        def on_mesh(event: MeshEvent) -> None:
            update = MeshUpdate(
                session=self.session, job=job.id, iteration=event.iteration, resolution=event.resolution,
                final=event.final, vertices=event.vertices, faces=event.faces, colours=event.colours,
            )
            if event.final:
                final.append(update)
            self._send(push, job, update, FINAL if event.final else PREVIEW)

        try:
            result = self.runner(job, on_progress, on_mesh, job.cancel.is_set)
        except Cancelled:
            log.info("job %s cancelled: %s", job.id, job.cancel_reason)
            self._cancelled(push, job)
            return
        except ReconstructionError as exc:
            log.warning("job %s failed: %s", job.id, exc)
            self._ended(push, job, FAILED,
                        JobFailed(session=self.session, job=job.id, code=exc.code, message=str(exc)))
            return
        except Exception as exc:  # a bug or an out-of-memory must fail this job, not the backend
            log.exception("job %s crashed", job.id)
            self._ended(push, job, FAILED, JobFailed(session=self.session, job=job.id, code="internal_error",
                                                     message=f"{type(exc).__name__}: {exc}"))
            return
        log.info("job %s done in %.1f s", job.id, sum(result.timings.values()))
        if final:
            self._keep(job, final[-1], result)
        self._ended(push, job, DONE, JobDone(session=self.session, job=job.id, mode=result.mode,
                                             stats=result.stats, timings=result.timings))
