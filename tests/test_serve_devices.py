"""``serve --devices``: one worker per device, each on its own thread, jobs to the first free one."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import zmq

from evaluation.metrics import compare_meshes
from siren_recon.engine.errors import ConfigError
from siren_recon.protocol import JobDone, MeshUpdate
from siren_recon.server.config import ServerConfig
from siren_recon.server.devices import train_on, worker_devices, worker_threads
from siren_recon.server.executors import runners
from siren_recon.server.jobs import DONE, FINISHED, FairQueue, Job
from siren_recon.server.worker import Worker

from .live_backend import run_two_jobs, started_before_first_done
from .shapes import SMALL, small_config, sphere_cloud


def test_the_device_list_names_one_worker_each():
    assert worker_devices("cpu,cpu", "auto") == ["cpu", "cpu"]
    assert worker_devices(" cpu ", "auto") == ["cpu"]
    assert worker_devices("auto", "auto") == ["cpu"]  # no CUDA here (the suite runs as on a CPU machine)
    assert worker_devices("", "auto") == ["auto"]  # no list: the one --device, as before
    assert [name for _, name, _ in runners(ServerConfig(devices="cpu,cpu"))] == ["worker-0-cpu", "worker-1-cpu"]
    assert [device for _, _, device in runners(ServerConfig())] == ["auto"]


@pytest.mark.parametrize(
    ("devices", "message"),
    [("cpu,,cpu", "empty entry"), ("cuda:0", "CUDA is not available"), ("tpu", "unknown device|not supported"),
     ("auto,cpu", "auto stands alone")],
)
def test_a_bad_device_list_is_one_clear_error(devices, message):
    with pytest.raises(ConfigError, match=message):
        worker_devices(devices, "auto")


def test_a_job_trains_on_the_device_it_is_given_and_keeps_its_other_settings():
    asked = small_config(train__device="cuda:99", train__seed=7)
    placed = train_on(asked, "cpu")
    assert placed.train.device == "cpu" and asked.train.device == "cuda:99"
    assert placed.train.seed == 7 and placed.model == asked.model and placed.mesh == asked.mesh


def test_cpu_workers_share_the_cores_and_a_job_that_names_its_threads_keeps_them():
    assert worker_threads(["cpu", "cpu"], cores=8) == 4
    assert worker_threads(["cpu", "cpu", "cpu"], cores=8) == 2
    assert worker_threads(["cpu", "cpu", "cpu"], cores=2) == 1  # never none
    assert worker_threads(["cpu"], cores=8) == 0  # one worker: torch's own choice, every core
    assert worker_threads(["auto"], cores=8) == 0
    assert worker_threads(["cuda:0", "cpu"], cores=8) == 0  # the CPU worker is the only one on the cores
    assert train_on(small_config(), "cpu", threads=4).train.threads == 4
    assert train_on(small_config(train__threads=3), "cpu", threads=4).train.threads == 3
    assert train_on(small_config(), "cpu").train.threads == 0


@pytest.mark.slow
def test_a_worker_trains_a_job_on_its_own_device_whatever_the_client_named():
    """A client's ``train.device`` naming a GPU this machine lacks: the CPU worker trains the job there."""
    points, normals = sphere_cloud(800)
    job = Job(id="j", client=b"c", owner="c", result_owner="", tag="", detached=False, points=points,
              normals=normals, colours=None, config=small_config(train__iterations=20, mesh__resolution=24,
                                                                 train__device="cuda:99"))
    context = zmq.Context()
    replies = context.socket(zmq.PULL)
    replies.bind("inproc://replies")
    finished: list[Job] = []
    queue = FairQueue()
    worker = Worker(queue, context, "inproc://replies", "session", "cpu", finished.append)
    worker.start()
    try:
        queue.put(job)
        deadline = time.monotonic() + 120
        while not finished and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stopping.set()
        worker.join(timeout=30)
        replies.close(linger=0)
        context.term()
    assert finished and job.state in FINISHED
    assert job.state == DONE, "the job trained on the device the client named, not the worker's"
    assert job.config.train.device == "cpu"


def test_devices_are_for_the_local_executor():
    with pytest.raises(ConfigError, match="--devices"):
        ServerConfig(devices="cpu,cpu", executor="ray")


@pytest.mark.slow
@pytest.mark.live
def test_two_cpu_workers_train_two_jobs_at_once_each_as_alone(tmp_path):
    points, normals = sphere_cloud(1000, radius=1.0)
    job = {**SMALL, "train.iterations": 150, "train.progress_every": 10, "preview.enabled": False}
    events = run_two_jobs(tmp_path, "cpu,cpu", points, normals, job)
    started = started_before_first_done(events)
    assert len(started) == 2, "the second job waited for the first: one worker, not two"
    finals = [e for e in events if isinstance(e, MeshUpdate) and e.final]
    assert len(finals) == 2 and finals[0].job != finals[1].job
    # each job on its worker's half of the cores, not both on all of them
    threads = [e.stats["threads"] for e in events if isinstance(e, JobDone)]
    assert threads == [max(1, torch.get_num_threads() // 2)] * 2
    # the same job on two threads at once: the same network and samples (no shared generator),
    # so the same surface (a float reduction may round differently between threads)
    score = compare_meshes(finals[0].vertices, finals[0].faces, finals[1].vertices, finals[1].faces, samples=20_000)
    assert score.chamfer_l1 < 1e-3
    assert abs(float(np.median(np.linalg.norm(finals[0].vertices, axis=1))) - 1.0) < 0.05
