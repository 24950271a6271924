"""Stopping a training run on SIGTERM: the step in flight finishes, its checkpoint is written, exit 143.

A scheduler (Slurm, Kubernetes, a spot-instance reclaim) sends SIGTERM to the driver and, after a
grace period (Kubernetes: 30 s by default), SIGKILL. Stopping at once would lose every step since
the latest checkpoint and train it again after the resume. Instead, while Ray Train runs:

1. the driver's handler (:class:`GracefulStop`) only sets a flag and prints one line; a driver
   thread forwards the request to the run's progress actor (a Ray call is not made from inside
   the handler, which can run within one of Ray's blocking calls);
2. every worker asks :func:`stop_check` after each step: rank 0 reads the actor's flag (at most
   every ``poll_s``), and all ranks agree on it with one all-reduce, so they leave after the
   same step;
3. the trainer writes a checkpoint of that step unless the schedule just wrote one, reports it
   to Ray Train and returns; the driver records the result and ends with
   ``PROG: stopped by SIGTERM at step N ...`` and exit status 143;
4. a second SIGTERM, or ``cluster.stop_grace_s`` seconds without the workers returning, stops at
   once (the latest checkpoint is kept, the step in flight is trained again after the resume).

The re-run continues from that checkpoint, so ``metrics.jsonl`` holds every step once and no
checkpoint is left outside Ray Train's rotation. Elsewhere (planning, building shards) SIGTERM
keeps its immediate one-line exit (:func:`pipelines.common.errors.install_sigterm`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any, Callable

from pipelines.common.errors import _on_sigterm


class StopRequest:
    """Actor body: the driver's stop flag, read by rank 0."""

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        self.requested = True

    def is_requested(self) -> bool:
        return self.requested


def stop_actor():
    """A new stop-flag actor (zero CPUs): ``request()``, ``is_requested()``."""
    import ray

    return ray.remote(num_cpus=0)(StopRequest).remote()


class GracefulStop:
    """Driver side, around ``trainer.fit()``: SIGTERM asks the workers to stop after their step.

    Args:
        actor: the run's :func:`stop_actor`.
        label: the stage's name on the console line (``train``, ``pretrain``).
        grace_s: seconds to wait for the workers after the request before stopping at once
            (0: stop at once, as outside training).
    """

    def __init__(self, actor: Any, label: str, grace_s: float) -> None:
        self.actor, self.label, self.grace_s = actor, label, grace_s
        self.requested = threading.Event()
        self._done = threading.Event()
        self._previous: Any = None
        self._installed = False
        self._thread = threading.Thread(target=self._forward, name="vloss-graceful-stop", daemon=True)

    def __enter__(self) -> GracefulStop:
        if self.grace_s > 0 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():  # the second one: at once
            _on_sigterm(signum, frame)
            return
        self.requested.set()
        sys.stdout.write(f"\n[{self.label}] SIGTERM: finishing the step in flight and writing its checkpoint, "
                         f"then stopping (at most {self.grace_s:g} s; a second SIGTERM stops at once)\n")
        sys.stdout.flush()

    def _forward(self) -> None:
        """Thread: hand the request to the actor, then enforce the grace period."""
        while not self._done.is_set():
            if self.requested.wait(0.2):
                break
        if self._done.is_set():
            return
        try:
            self.actor.request.remote()
        except Exception:  # Ray is going away: nothing to stop gracefully
            _on_sigterm(signal.SIGTERM, None)
        if not self._done.wait(self.grace_s):
            _on_sigterm(signal.SIGTERM, None)


def stop_check(actor: Any, rank: int, world_size: int, device: Any, poll_s: float = 0.5) -> Callable[[], bool]:
    """Worker side: a function that says, identically on every rank, whether to stop after this step.

    Args:
        actor: the run's :func:`stop_actor` (None: never stop early).
        rank: this worker's global rank (only rank 0 asks the actor).
        world_size: number of workers (more than one: one all-reduce per call).
        device: the device of the all-reduce's one-element tensor (CUDA under NCCL).
        poll_s: rank 0 asks the actor at most this often.
    """
    import torch

    if actor is None:
        return lambda: False
    last = {"t": 0.0, "value": False}

    def local() -> bool:
        if rank != 0:
            return False
        now = time.monotonic()
        if not last["value"] and now - last["t"] >= poll_s:
            import ray

            last["t"] = now
            try:
                last["value"] = bool(ray.get(actor.is_requested.remote(), timeout=30))
            except Exception:  # the driver is gone: Ray Train ends the workers itself
                last["value"] = False
        return last["value"]

    def check() -> bool:
        flag = local()
        if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            t = torch.tensor([1 if flag else 0], device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    return check
