"""The job queue's positions and a job's cancel bookkeeping (the server's, without sockets)."""

from __future__ import annotations

import threading

import numpy as np

from siren_recon.engine.config.reconstruction import ReconstructionConfig
from siren_recon.server.jobs import CANCELLED, DONE, QUEUED, FairQueue, Job


def job(client: bytes, name: str = "") -> Job:
    return Job(id=name or client.hex(), client=client, owner=client.hex(), result_owner="", tag="", detached=False,
               points=np.zeros((0, 3)), normals=None, colours=None, config=ReconstructionConfig())


def test_queue_position_is_0_only_when_a_worker_is_free():
    queue = FairQueue(slots=1)
    first = job(b"a", "1")
    assert queue.put(first) == 0
    assert queue.get(timeout=0.1) is first  # running now
    assert queue.put(job(b"a", "2")) == 1  # next, when the running one ends
    assert queue.put(job(b"a", "3")) == 2
    assert queue.put(job(b"b", "4")) == 2  # another client's job takes its turn after one of a's
    queue.done()
    assert queue.put(job(b"c", "5")) == 2  # the slot is free: a's next job and b's start first


def test_two_slots_start_two_jobs_at_once():
    queue = FairQueue(slots=2)
    assert queue.put(job(b"a", "1")) == 0
    assert queue.get(timeout=0.1) is not None
    assert queue.put(job(b"b", "2")) == 0
    assert queue.get(timeout=0.1) is not None
    assert queue.put(job(b"c", "3")) == 1


def test_every_cancel_request_is_answered_once_and_none_after_the_end():
    running = job(b"a")
    assert running.request_cancel("by the client", "cancel-1")
    assert running.request_cancel("by the client", "cancel-2")
    assert running.cancel.is_set() and running.state == QUEUED
    assert running.end(CANCELLED) == ["cancel-1", "cancel-2"]
    assert not running.request_cancel("by the client", "cancel-3")  # ended: the caller answers job_finished


def test_a_cancel_racing_the_end_of_a_job_is_answered_by_whoever_ends_it():
    racing = job(b"a")
    answered: list[str] = []
    refused: list[str] = []

    def cancel(i: int) -> None:
        (answered if racing.request_cancel("x", f"c{i}") else refused).append(f"c{i}")

    threads = [threading.Thread(target=cancel, args=(i,)) for i in range(50)]
    for t in threads[:25]:
        t.start()
    late = racing.end(DONE)
    for t in threads[25:]:
        t.start()
    for t in threads:
        t.join()
    assert sorted(late) == sorted(answered) and len(answered) + len(refused) == 50
