"""Preview meshes made on a thread of their own, so training does not wait for marching cubes.

At a preview's iteration the training thread takes a copy of the weights (a few hundred
kilobytes, copied on the device in the order of its other work) and goes on training; one
meshing thread meshes the copies in turn. Finished previews are handed on from the training
thread, never from the meshing one (a server's reply socket belongs to the training thread):
whenever it reports progress, and all that are left when the stage ends. So they keep their
order, and every preview of a stage comes before the next stage and before the final mesh.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..events import MeshEvent
from ..field.sdf_field import SdfField

MeshCallback = Callable[[MeshEvent], None]


class PreviewThread:
    """Meshes snapshots of ``field`` on one thread; ``offset`` is added to their iterations."""

    def __init__(self, field: SdfField, offset: int, on_mesh: MeshCallback) -> None:
        self.field = field
        self.offset = offset
        self.on_mesh = on_mesh
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-mesher")
        self.pending: deque[tuple[int, int, Future[tuple[np.ndarray, np.ndarray]]]] = deque()

    def __call__(self, iteration: int, resolution: int) -> None:
        """Take a snapshot of the weights now and queue its mesh (the trainer's preview callback)."""
        self.field.support_index  # noqa: B018 - built once here, shared by the snapshots' shallow copies
        snapshot = copy.copy(self.field)
        snapshot.model = copy.deepcopy(self.field.model)
        self.pending.append((iteration, resolution, self.pool.submit(snapshot.mesh, resolution)))

    def deliver_ready(self) -> None:
        """Hand on the finished previews at the front of the queue, oldest first."""
        while self.pending and self.pending[0][2].done():
            self._deliver()

    def finish(self) -> None:
        """Wait for every queued preview and hand each on, in order; then stop the thread."""
        try:
            while self.pending:
                self._deliver()
        finally:
            self.pool.shutdown(wait=True)

    def abandon(self) -> None:
        """Drop the queued previews (training failed or was cancelled) and stop the thread."""
        for _, _, future in self.pending:
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True)

    def _deliver(self) -> None:
        iteration, resolution, future = self.pending.popleft()
        vertices, faces = future.result()
        self.on_mesh(MeshEvent(iteration + self.offset, resolution, vertices, faces, final=False))
