"""The actor-pool stage: decode tasks feeding a pool of model actors, the protocol of every batch job.

Pseudo masks, evaluation and batch prediction are one pipeline with different models:
``from_items`` (one row per image) -> ``map_batches(decode)`` (torch-free Ray tasks) ->
``map_batches(<ActorStage>, ActorPoolStrategy)`` (the model, loaded once per actor) -> the
driver's ``iter_batches``. This module holds the three shared parts:

- :class:`ActorPoolConfig`: the pool's resources, embedded as ``pool`` in each job's config (one
  set of defaults; ``--set pool.num_actors=4``).
- :class:`ActorStage`: the actor's side. A subclass says how one row becomes a model input
  (:meth:`ActorStage.prepare`), how a list of inputs is run (:meth:`ActorStage.run`) and how one
  output becomes columns (:meth:`ActorStage.encode`); the base runs the whole batch, and when it
  fails runs it image by image so that one bad image is a counted failure, not a lost batch.
- :func:`run_actor_pool`: the driver's side. It starts (or joins) Ray, checks that the pool fits
  the cluster and that local paths are reachable from every node, builds the dataset and yields the
  actors' output batches; an actor pool that cannot start in time is one :class:`ResourceError`.

A new batch-inference stage is an ``ActorStage`` subclass, a config with a ``pool`` field and one
:func:`run_actor_pool` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np

from pipelines.common.resources import ResourceError, check_fits, default_cpus
from pipelines.common.shared_paths import check_shared

# how long an actor pool may take to start when the job sets no resource_wait_s: room for the
# actors' own start-up (imports, weights) on top of the placement
ACTOR_START_S_LOCAL = 120.0
ACTOR_START_S_JOINED = 600.0


@dataclass
class ActorPoolConfig:
    """Resources of a job's actor pool and its decode tasks.

    Args:
        num_actors: model actors in the pool.
        gpus_per_actor: GPUs per actor (0 on CPU machines); an actor holding a GPU runs on CUDA.
        cpus_per_actor: logical CPUs each actor reserves (None: 4 with a GPU, else 0.5).
        cpus_per_decode_task: logical CPUs each decode task reserves.
        decode_tasks: decode tasks in flight at once (each worker is reused); None: two per actor, so
            the decode keeps up as the pool grows (one task reads and decodes about 40 full-size JPEGs/s
            on one core, about one GPU model's rate).
        ray_num_cpus: CPUs of the embedded local Ray (None: all of this machine's; ignored inside a
            Ray job or on a cluster).
        resource_wait_s: seconds to wait for a joined cluster's autoscaler to provide the pool's
            resources before failing (None: 300 on a joined cluster, 0 on the embedded Ray). It also
            bounds the pool's start (unset or 0: 120 s locally, 600 s on a joined cluster), so a cluster
            whose CPUs another job holds fails in one line instead of waiting forever.
        shared_fs: local paths lie on a mount every node of the cluster shares at the same path;
            without it a cluster of several nodes refuses local paths its tasks would use
            (:mod:`pipelines.common.shared_paths`).
    """

    num_actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: Optional[float] = None
    cpus_per_decode_task: float = 0.25
    decode_tasks: Optional[int] = None
    ray_num_cpus: Optional[int] = None
    resource_wait_s: Optional[float] = None
    shared_fs: bool = False

    def __post_init__(self) -> None:
        if self.num_actors <= 0:
            raise ValueError(f"pool.num_actors must be positive, got {self.num_actors}")
        if self.decode_tasks is not None and self.decode_tasks <= 0:
            raise ValueError(f"pool.decode_tasks must be positive, got {self.decode_tasks}")
        if self.gpus_per_actor < 0 or self.cpus_per_decode_task <= 0:
            raise ValueError("pool.gpus_per_actor must be >= 0 and pool.cpus_per_decode_task > 0")

    @property
    def actor_cpus(self) -> float:
        """CPUs each actor reserves (the explicit setting, else the default for its GPUs)."""
        return self.cpus_per_actor if self.cpus_per_actor is not None else default_cpus(self.gpus_per_actor)

    @property
    def decode_task_count(self) -> int:
        """Decode tasks in flight: the explicit setting, else two per actor."""
        return self.decode_tasks if self.decode_tasks is not None else 2 * self.num_actors


def resolve_weights(weights: Any) -> Any:
    """The state dict an actor was given: as is, or fetched from the one-element list holding the Ray
    object reference the driver put once (nested so that Ray does not resolve it per actor argument)."""
    if isinstance(weights, list) and len(weights) == 1:
        import ray

        return ray.get(weights[0])
    return weights


class ActorStage:
    """Base of a Ray Data actor stage: decoded rows in, one model call per batch, failures isolated.

    Input batches carry the decode task's ``error`` column (empty string: decoded). Output batches
    hold the ``passthrough`` columns, ``error`` (the decode's, or ``"<what> failed: <exception>"``)
    and every column of ``outputs`` (a failed row keeps the default given there).

    Subclasses set ``passthrough``, ``outputs`` (an instance attribute where a default depends on
    the actor, e.g. a digest) and ``what``, and implement :meth:`prepare`, :meth:`run`, :meth:`encode`.
    """

    passthrough: tuple[str, ...] = ("index",)
    outputs: dict[str, Any] = {}
    what: str = "inference"

    def prepare(self, batch: dict[str, np.ndarray], i: int) -> Any:
        """Row ``i`` of ``batch`` as one model input."""
        raise NotImplementedError

    def run(self, inputs: list[Any]) -> list[Any]:
        """The model on ``inputs``: one output per input, in order."""
        raise NotImplementedError

    def encode(self, output: Any, batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        """One output (of row ``i``) as values of the ``outputs`` columns."""
        raise NotImplementedError

    def _failure(self, exc: Exception) -> str:
        return f"{self.what} failed: {type(exc).__name__}: {exc}"

    def _run_isolated(self, inputs: list[Any]) -> list[Any]:
        """Outputs of ``inputs``; when the batch fails, image by image (a failure becomes its message)."""
        if not inputs:
            return []
        try:
            return list(self.run(inputs))
        except Exception:  # isolate the image that fails instead of losing the batch
            outs: list[Any] = []
            for x in inputs:
                try:
                    outs.append(self.run([x])[0])
                except Exception as exc:
                    outs.append(_Failed(self._failure(exc)))
            return outs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["error"])
        errors = [str(e) for e in batch["error"]]
        columns = {name: [default] * n for name, default in self.outputs.items()}
        todo = [i for i in range(n) if not errors[i]]
        inputs = []
        for i in list(todo):
            try:
                inputs.append(self.prepare(batch, i))
            except Exception as exc:
                errors[i] = self._failure(exc)
                todo.remove(i)
        for i, out in zip(todo, self._run_isolated(inputs)):
            if isinstance(out, _Failed):
                errors[i] = out.message
                continue
            try:
                values = self.encode(out, batch, i)
            except Exception as exc:
                errors[i] = self._failure(exc)
                continue
            for name, value in values.items():
                columns[name][i] = value
        result = {name: batch[name] for name in self.passthrough}
        result["error"] = _objects(errors)
        result.update({name: _objects(values) for name, values in columns.items()})
        return result


@dataclass(frozen=True)
class _Failed:
    message: str


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array (bytes and strings of any length stay whole; never a 2-D array of chars)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def check_actor_pool_fits(pool: ActorPoolConfig, job: str, actors: str) -> None:
    """:func:`pipelines.common.resources.check_fits` for one decode task feeding ``pool``.

    Args:
        pool: the pool's resources.
        job: the job in words (``"the pseudo-mask job"``).
        actors: what one actor is (``"teacher"``, ``"predictor"``).
    """
    gpus = f" x {pool.gpus_per_actor:g} GPU" if pool.gpus_per_actor else ""
    check_fits({"CPU": pool.num_actors * pool.actor_cpus + pool.cpus_per_decode_task,
                "GPU": pool.num_actors * pool.gpus_per_actor},
               f"{job} ({pool.num_actors} {actors} actors x {pool.actor_cpus:g} CPU{gpus} + a "
               f"{pool.cpus_per_decode_task:g}-CPU decode task)", pool.resource_wait_s)


def actor_start_wait_s(resource_wait_s: float | None) -> float:
    """Seconds an actor pool may take to start: ``resource_wait_s`` when set above 0, else 120 s on
    the embedded Ray and 600 s on a joined cluster."""
    from pipelines.common.ray_env import started_locally

    if resource_wait_s:
        return float(resource_wait_s)
    return ACTOR_START_S_LOCAL if started_locally() else ACTOR_START_S_JOINED


def iter_pool_results(ds: Any, pool: ActorPoolConfig, job: str, actors: str) -> Iterator[dict]:
    """``ds.iter_batches`` (NumPy, as produced) of an actor-pool dataset whose actors must start in time.

    :func:`check_actor_pool_fits` compares the job with the cluster's totals; a cluster whose CPUs
    are held by another job passes that check, and Ray Data would then wait for the actors
    forever. Ray Data's own ``wait_for_min_actors_s`` (set on the dataset's context, which the
    dataset copied when it was built) bounds that wait to :func:`actor_start_wait_s`, and its
    timeout becomes one :class:`ResourceError` naming the free and total resources.
    """
    import ray
    from ray.exceptions import GetTimeoutError

    wait = actor_start_wait_s(pool.resource_wait_s)
    ds.context.wait_for_min_actors_s = int(max(1, round(wait)))
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")
    except GetTimeoutError as exc:
        if "starting actors" not in str(exc):
            raise
        free, total = ray.available_resources(), ray.cluster_resources()
        gpus = f" and {pool.gpus_per_actor:g} GPU" if pool.gpus_per_actor else ""
        raise ResourceError(
            f"{job}: its {pool.num_actors} {actors} actor(s) ({pool.actor_cpus:g} CPU{gpus} each) did not start "
            f"within {wait:g} s; the cluster has {free.get('CPU', 0):g} of {total.get('CPU', 0):g} CPUs"
            + (f" and {free.get('GPU', 0):g} of {total.get('GPU', 0):g} GPUs" if pool.gpus_per_actor else "")
            + " free (another job holds them?); retry when it ends, ask for fewer actors, or wait longer with "
              "the job's pool.resource_wait_s setting") from None


def run_actor_pool(items: list[dict], *, decode: Callable[..., dict], decode_kwargs: dict[str, Any],
                   stage: type[ActorStage], stage_kwargs: dict[str, Any], pool: ActorPoolConfig,
                   batch_size: int, job: str, actors: str, paths: dict[str, str | None],
                   preserve_order: bool = False, max_blocks: int = 64) -> Iterator[dict[str, np.ndarray]]:
    """Run ``items`` through decode tasks and a pool of ``stage`` actors; yield the output batches.

    Args:
        items: one dict per image (the decode function's input columns).
        decode: the torch-free Ray task ``decode(batch, **decode_kwargs) -> batch`` (adds ``error``).
        stage: the actor class; ``stage_kwargs`` are its constructor's arguments (put large values
            in the object store first and pass ``[ref]``, see :func:`resolve_weights`).
        pool: the pool's resources.
        batch_size: images per decode call and per model call.
        job, actors: the job and one actor in words, for messages (``"the prediction job"``, ``"predictor"``).
        paths: what each local path the tasks read is (``"--images"``) -> the path, for the
            several-nodes check (:func:`pipelines.common.shared_paths.check_shared`).
        preserve_order: yield in the order of ``items`` (a driver that commits shards as their
            images arrive holds about one shard at a time).
        max_blocks: at most this many input blocks.

    Raises:
        ResourceError: the pool does not fit the cluster, or does not start in time.
        NotSharedError: a local path on a cluster of several nodes without ``pool.shared_fs``.
    """
    import ray

    from pipelines.common.ray_env import ensure_ray

    ensure_ray(pool.ray_num_cpus)
    check_actor_pool_fits(pool, job, actors)
    check_shared(paths, job, pool.shared_fs, "--set pool.shared_fs=true")
    ctx = ray.data.DataContext.get_current()
    previous = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = preserve_order
    try:
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(-(-len(items) // batch_size), max_blocks)))
        ds = ds.map_batches(decode, fn_kwargs=decode_kwargs,
                            compute=ray.data.TaskPoolStrategy(size=pool.decode_task_count),
                            batch_size=batch_size, num_cpus=pool.cpus_per_decode_task)
        ds = ds.map_batches(stage, fn_constructor_kwargs=stage_kwargs,
                            compute=ray.data.ActorPoolStrategy(size=pool.num_actors),
                            batch_size=batch_size, num_cpus=pool.actor_cpus, num_gpus=pool.gpus_per_actor)
        yield from iter_pool_results(ds, pool, job, actors)
    finally:
        ctx.execution_options.preserve_order = previous
