"""The training step schedule: which task every step of every epoch draws a batch from.

The plan is a pure function of the `ScheduleConfig` (which includes the seed) and the position
(epoch, step). Every rank builds the same `StepSchedule` from the same config and therefore
takes the same task at the same step, so all ranks iterate the same Ray dataset at the same
time (each `iter_torch_batches()` is a barrier across ranks) and DDP sees the same graph.
Nothing here depends on process state: no global RNG, no `hash()` of strings (randomised per
process), no ray import, no numpy. The plan can be rebuilt after a restart from the config alone.

Tasks: "panoptic" (COCO panoptic), "detection" (Objects365 boxes + pseudo masks) and
"captions" (image-text pairs).

Modes (one table, :data:`vloss.training.schedule_modes.SCHEDULE_MODES`):
- "stt" (paper Sec. 3.4, Fig. 3 right): each epoch is a warmup sub-epoch (all detection
  batches, captions interleaved) followed by a cooldown sub-epoch (all panoptic batches,
  captions interleaved).
- "mix" (Table 4 "w/ Mixing", Fig. 3 left): the same batches as an STT epoch, in one seeded
  random order per epoch.
- "pretrain" (Table 4 "w/ Pretrain"): the first `pretrain_epochs` epochs are detection
  (+captions) epochs, the remaining ones panoptic (+captions) fine-tuning epochs.
- "panoptic" (Mask2Former+CLIP baseline): panoptic (+captions) epochs only.

Step counts: a dataset of N images with a global batch G gives N // G steps per pass (the
remainder is dropped, as Ray Train's `drop_last=True` does). The schedule does not depend on
the number of workers: a step trains on the same G images on any number of them
(:mod:`pipelines.train.pass_plan`), so an elastic run that loses or regains workers keeps its plan.

Captions: in a sub-epoch with d dense steps there are floor(d * caption_ratio) caption steps,
spread evenly: caption step k (0-based) comes right after dense step ceil((k + 1) / ratio), so
`caption_ratio=0.5` gives D D C D D C ... and `2.0` gives D C C D C C ...; 0 disables captions.
The caption dataset is read as one continuous stream across sub-epochs and epochs; when it
runs out it is cycled: the next caption batch is batch 0 of a new pass. The dense datasets
are read exactly once per epoch in which they appear, so their pass restarts every epoch.

Data positions: checkpoints carry no data position (docs/DESIGN.md), so `cursor(epoch, step)` and
`resume_cursors(epoch, step)` tell the trainer, for each task, which pass of its dataset it is
in and how many batches of that pass were already consumed, so it can skip them after resume.

Use in a training loop (every rank runs the same code)::

    schedule = StepSchedule(cfg)
    if resuming:
        schedule.load_state_dict(ckpt["schedule"])       # refuses another schedule's state
    start = schedule.next_position
    skip = schedule.resume_cursors(*start)               # batches to skip per task
    for epoch, step, task in schedule.iter_from(*start):
        batch = next(iterators[task])                    # same dataset on every rank
        ...
        schedule.mark_done(epoch, step)
        if schedule.sub_epoch_end(epoch, step) is not None:
            save_checkpoint(schedule=schedule.state_dict(), ...)
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import random
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any, Iterator, NamedTuple

from vloss.training.schedule_modes import MODES, schedule_mode
from vloss.training.tasks import TASKS

# Bump when the plan a config produces changes: old checkpoints then refuse to resume.
# 2: steps counted from the global batch, independent of the workers (elastic runs).
SCHEDULE_ALGORITHM_VERSION = 2
_STATE_FORMAT = "vloss.step_schedule"
# A caption ratio is read as the nearest fraction with a denominator up to this, so that
# 0.1 * 30 is exactly 3 and 1/3 entered as 0.3333333 means one caption per three dense steps.
_RATIO_MAX_DENOMINATOR = 1000


class ScheduleMismatchError(ValueError):
    """A schedule state was saved with a different schedule than the one resuming it."""


@dataclass
class TaskData:
    """Size of one task's dataset and its global batch.

    Args:
        num_images: number of images (rows) in the dataset.
        batch_size: the global batch: images one step draws from the pass over all workers.
    """

    num_images: int
    batch_size: int

    def validate(self, task: str) -> None:
        """Raise ValueError naming `task` when a size is not a usable integer."""
        for name in ("num_images", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"schedule: {task}.{name} must be an int, got {value!r}")
        if self.num_images < 0:
            raise ValueError(f"schedule: {task}.num_images must be >= 0, got {self.num_images}")
        if self.batch_size < 1:
            raise ValueError(f"schedule: {task}.batch_size must be >= 1, got {self.batch_size}")

    def steps(self) -> int:
        """Steps of one pass with drop_last: num_images // the global batch."""
        return self.num_images // self.batch_size


@dataclass
class ScheduleConfig:
    """Everything the step plan depends on. Saved (and fingerprinted) in every checkpoint.

    Args:
        mode: "stt" (default), "mix", "pretrain" or "panoptic" (see module docstring).
        epochs: number of epochs of the whole run.
        seed: seeds the order of "mix" epochs; other modes are fully deterministic anyway.
        caption_ratio: caption steps per dense step (0.5: one per two dense steps; 0: none).
        pretrain_epochs: "pretrain" mode only: detection epochs before panoptic fine-tuning;
            None means epochs // 2. Must leave at least one fine-tuning epoch.
        panoptic: panoptic dataset size and per-worker batch (all modes).
        detection: detection dataset size and per-worker batch ("stt", "mix", "pretrain").
        captions: image-text dataset size and per-worker batch (when caption_ratio > 0).
    """

    mode: str = "stt"
    epochs: int = 12
    seed: int = 0
    caption_ratio: float = 0.5
    pretrain_epochs: int | None = None
    panoptic: TaskData | None = None
    detection: TaskData | None = None
    captions: TaskData | None = None

    def tasks_used(self) -> tuple[str, ...]:
        """The tasks this config's plan draws from, in `TASKS` order."""
        used = list(schedule_mode(self.mode).dense_tasks())
        if self.caption_ratio > 0:
            used.append("captions")
        return tuple(t for t in TASKS if t in used)

    def resolved_pretrain_epochs(self) -> int:
        """Detection epochs of "pretrain" mode (0 in every other mode)."""
        if not schedule_mode(self.mode).staged:
            return 0
        return self.epochs // 2 if self.pretrain_epochs is None else self.pretrain_epochs

    def validate(self) -> None:
        """Raise ValueError with the offending field when the config cannot make a plan."""
        if self.mode not in MODES:
            raise ValueError(f"schedule: mode must be one of {MODES}, got {self.mode!r}")
        for name in ("epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"schedule: {name} must be an int, got {value!r}")
        if self.epochs < 1:
            raise ValueError(f"schedule: epochs must be >= 1, got {self.epochs}")
        if not isinstance(self.caption_ratio, (int, float)) or isinstance(self.caption_ratio, bool) \
                or not (0 <= self.caption_ratio < float("inf")):
            raise ValueError(f"schedule: caption_ratio must be a finite number >= 0, "
                             f"got {self.caption_ratio!r}")
        if schedule_mode(self.mode).staged:
            p = self.resolved_pretrain_epochs()
            if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p < self.epochs:
                raise ValueError(f"schedule: {self.mode} mode needs 1 <= pretrain_epochs < epochs "
                                 f"(= {self.epochs}), got pretrain_epochs={p!r}")
        for task in self.tasks_used():
            data = getattr(self, task)
            if data is None:
                raise ValueError(f"schedule: mode {self.mode!r} with caption_ratio="
                                 f"{self.caption_ratio} draws from {task!r} but `{task}` is not set")
            data.validate(task)
            if data.steps() == 0:
                raise ValueError(
                    f"schedule: {task} has {data.num_images} images, fewer than one global batch "
                    f"of {data.batch_size}; with drop_last it would yield no steps")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (nested TaskData as dicts or None)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScheduleConfig":
        """Inverse of `to_dict`; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"schedule: unknown ScheduleConfig fields {unknown}")
        kwargs = dict(data)
        for task in TASKS:
            if isinstance(kwargs.get(task), dict):
                kwargs[task] = TaskData(**kwargs[task])
        return cls(**kwargs)

    def fingerprint(self) -> str:
        """Stable hash of the plan-defining config and the algorithm version (16 hex digits)."""
        plan_defining = self.to_dict()
        # fields the plan ignores do not block a resume (e.g. detection sizes in panoptic mode)
        for task in TASKS:
            if task not in self.tasks_used():
                plan_defining[task] = None
        if not schedule_mode(self.mode).staged:
            plan_defining["pretrain_epochs"] = None
        payload = json.dumps({"algorithm": SCHEDULE_ALGORITHM_VERSION, "config": plan_defining},
                             sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class SubEpoch(NamedTuple):
    """A named run of steps [start, stop) inside an epoch; checkpoint when step + 1 == stop."""

    name: str
    start: int
    stop: int


class DataCursor(NamedTuple):
    """Where a task's dataset stands: batch `batch_index` of pass `pass_index` (both 0-based)."""

    task: str
    pass_index: int
    batch_index: int


class _EpochPlan(NamedTuple):
    tasks: tuple[str, ...]  # [steps_in_epoch] task of each step
    local_index: tuple[int, ...]  # [steps_in_epoch] occurrences of that task earlier in the epoch
    sub_epochs: tuple[SubEpoch, ...]


def _interleave(dense_task: str, n_dense: int, ratio: Fraction) -> list[str]:
    """Dense steps with floor(n_dense * ratio) caption steps spread evenly between them."""
    n_captions = (n_dense * ratio.numerator) // ratio.denominator
    plan: list[str] = []
    k = 0
    for d in range(1, n_dense + 1):
        plan.append(dense_task)
        # caption k follows dense step ceil((k + 1) / ratio) = ceil((k + 1) * den / num)
        while k < n_captions and -((-(k + 1) * ratio.denominator) // ratio.numerator) <= d:
            plan.append("captions")
            k += 1
    return plan


def _seeded_shuffle(items: list[str], seed: int, epoch: int) -> list[str]:
    """Fisher-Yates shuffle driven only by `random.Random.random()`.

    Python guarantees `random()` reproduces for a given int seed across versions, while
    `random.shuffle`'s algorithm is not guaranteed; so the shuffle is written out here and the
    seed is derived from (seed, epoch) with sha256, which is identical in every process.
    """
    digest = hashlib.sha256(f"vloss-schedule-mix/{seed}/{epoch}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


class StepSchedule:
    """The full step plan of a run, plus a resumable position for checkpoints.

    Args:
        config: the schedule config; validated and deep-copied (later edits do not leak in).
    """

    _CACHE_EPOCHS = 4  # plans kept in memory (mix epochs all differ; others share one or two)

    def __init__(self, config: ScheduleConfig) -> None:
        config = copy.deepcopy(config)
        config.validate()
        self.config = config
        self._mode = schedule_mode(config.mode)
        self.fingerprint = config.fingerprint()
        self._ratio = Fraction(config.caption_ratio).limit_denominator(_RATIO_MAX_DENOMINATOR)
        # steps of one pass over each used dataset
        self.pass_lengths: dict[str, int] = {
            t: getattr(config, t).steps() for t in config.tasks_used()}
        self._counts = [self._epoch_counts(e) for e in range(config.epochs)]
        self._offsets = [0]  # [epochs + 1] global step at each epoch start
        self._prior: dict[str, list[int]] = {t: [0] for t in TASKS}  # [epochs + 1] per task
        for counts in self._counts:
            self._offsets.append(self._offsets[-1] + sum(counts.values()))
            for t in TASKS:
                self._prior[t].append(self._prior[t][-1] + counts.get(t, 0))
        self._cache: dict[int, _EpochPlan] = {}
        self._next_global = 0

    # ---- counts and shape -------------------------------------------------------------
    def _captions_for(self, n_dense: int) -> int:
        return (n_dense * self._ratio.numerator) // self._ratio.denominator

    def _epoch_counts(self, epoch: int) -> dict[str, int]:
        dense = {task: self.pass_lengths[task] for _, task in self._layout(epoch)}
        captions = sum(self._captions_for(n) for n in dense.values())
        return {**dense, **({"captions": captions} if captions else {})}

    def _layout(self, epoch: int) -> tuple[tuple[str, str], ...]:
        return self._mode.layout(epoch, self.config.resolved_pretrain_epochs())

    def counts(self, epoch: int) -> dict[str, int]:
        """Number of steps of each task in `epoch` (tasks with no step are left out)."""
        self._check_epoch(epoch)
        return dict(self._counts[epoch])

    @property
    def total_steps(self) -> int:
        """Steps of the whole run."""
        return self._offsets[-1]

    @property
    def epoch_offsets(self) -> tuple[int, ...]:
        """[epochs + 1] global step at which each epoch starts; the last entry is total_steps."""
        return tuple(self._offsets)

    @property
    def stage_lengths(self) -> list[int]:
        """Steps of each training stage: "pretrain" mode has two (detection pretraining, then the
        panoptic fine-tune, each with its own LR schedule), every other mode one."""
        if not self._mode.staged:
            return [self.total_steps]
        split = self._offsets[self.config.resolved_pretrain_epochs()]
        return [split, self.total_steps - split]

    @property
    def stage_starts(self) -> list[int]:
        """Global step at which each training stage begins (the first is 0)."""
        starts = [0]
        for length in self.stage_lengths[:-1]:
            starts.append(starts[-1] + length)
        return starts

    def steps_in_epoch(self, epoch: int) -> int:
        """Number of steps of `epoch`."""
        self._check_epoch(epoch)
        return self._offsets[epoch + 1] - self._offsets[epoch]

    # ---- the plan -----------------------------------------------------------------------
    def _build(self, epoch: int) -> _EpochPlan:
        layout = self._layout(epoch)
        if self._mode.shuffled:  # the segments' steps, in one seeded order
            canonical = [t for t in [task for _, task in layout] + ["captions"]
                         for _ in range(self._counts[epoch].get(t, 0))]
            tasks = _seeded_shuffle(canonical, self.config.seed, epoch)
            subs: tuple[SubEpoch, ...] = (SubEpoch(self._mode.shuffled_name, 0, len(tasks)),)
        else:
            tasks, parts = [], []
            for name, task in layout:
                segment = _interleave(task, self.pass_lengths[task], self._ratio)
                parts.append(SubEpoch(name, len(tasks), len(tasks) + len(segment)))
                tasks += segment
            subs = tuple(parts)
        seen = dict.fromkeys(TASKS, 0)
        local = []
        for t in tasks:
            local.append(seen[t])
            seen[t] += 1
        if seen != {t: self._counts[epoch].get(t, 0) for t in TASKS}:  # internal invariant
            raise RuntimeError(f"schedule: epoch {epoch} plan {seen} disagrees with its counts")
        return _EpochPlan(tuple(tasks), tuple(local), subs)

    def _plan(self, epoch: int) -> _EpochPlan:
        self._check_epoch(epoch)
        # unshuffled epochs of one layout are all alike (a staged mode has two): one plan object each
        cfg = self.config
        if self._mode.shuffled:
            key = epoch
        else:
            key = 0 if epoch < cfg.resolved_pretrain_epochs() or not self._mode.staged else cfg.epochs - 1
        plan = self._cache.get(key)
        if plan is None:
            if len(self._cache) >= self._CACHE_EPOCHS:
                self._cache.pop(next(iter(self._cache)))
            plan = self._cache[key] = self._build(key)
        return plan

    def epoch_plan(self, epoch: int) -> list[str]:
        """[steps_in_epoch(epoch)] the task of every step of `epoch`."""
        return list(self._plan(epoch).tasks)

    def task_at(self, epoch: int, step: int) -> str:
        """Task ("panoptic", "detection" or "captions") step `step` of `epoch` draws from."""
        self._check_step(epoch, step)
        return self._plan(epoch).tasks[step]

    def sub_epoch_boundaries(self, epoch: int) -> list[SubEpoch]:
        """Sub-epochs of `epoch` as (name, start, stop): stt gives warmup then cooldown."""
        return list(self._plan(epoch).sub_epochs)

    def sub_epoch_end(self, epoch: int, step: int) -> SubEpoch | None:
        """The sub-epoch that `step` of `epoch` is the last step of, else None."""
        self._check_step(epoch, step)
        for sub in self._plan(epoch).sub_epochs:
            if sub.stop == step + 1:
                return sub
        return None

    # ---- positions ----------------------------------------------------------------------
    def global_step(self, epoch: int, step: int) -> int:
        """Steps of the run before (epoch, step); (epochs, 0) maps to total_steps."""
        if epoch == self.config.epochs and step == 0:
            return self.total_steps
        self._check_step(epoch, step)
        return self._offsets[epoch] + step

    def position(self, global_step: int) -> tuple[int, int]:
        """(epoch, step) of a global step; total_steps maps to (epochs, 0), the end of the run."""
        if isinstance(global_step, bool) or not isinstance(global_step, int) \
                or not 0 <= global_step <= self.total_steps:
            raise IndexError(f"schedule: global step {global_step!r} outside [0, {self.total_steps}]")
        if global_step == self.total_steps:
            return self.config.epochs, 0
        epoch = bisect.bisect_right(self._offsets, global_step) - 1
        return epoch, global_step - self._offsets[epoch]

    def iter_from(self, epoch: int = 0, step: int = 0) -> Iterator[tuple[int, int, str]]:
        """Yield (epoch, step, task) from (epoch, step) to the end of the run.

        (epochs, 0) — the end — yields nothing, so a finished run resumes as a no-op.
        """
        start = self.global_step(epoch, step)
        e, s = self.position(start)
        while e < self.config.epochs:
            tasks = self._plan(e).tasks
            for i in range(s, len(tasks)):
                yield e, i, tasks[i]
            e, s = e + 1, 0

    def __iter__(self) -> Iterator[tuple[int, int, str]]:
        return self.iter_from(0, 0)

    # ---- data cursors -------------------------------------------------------------------
    def _drawn_before(self, task: str, epoch: int, step: int) -> int:
        """Batches of `task` drawn in the whole run before (epoch, step)."""
        if epoch == self.config.epochs:
            return self._prior[task][epoch]
        plan = self._plan(epoch)
        in_epoch = sum(1 for t in plan.tasks[:step] if t == task) if step else 0
        return self._prior[task][epoch] + in_epoch

    def cursor(self, epoch: int, step: int) -> DataCursor:
        """Dataset position of the batch that step (epoch, step) draws."""
        self._check_step(epoch, step)
        plan = self._plan(epoch)
        task = plan.tasks[step]
        drawn = self._prior[task][epoch] + plan.local_index[step]
        n = self.pass_lengths[task]
        return DataCursor(task, drawn // n, drawn % n)

    def batch_index(self, epoch: int, step: int) -> int:
        """Index, within the current pass of its task's dataset, of the batch this step draws.

        Dense tasks restart at 0 every epoch (one pass per epoch); captions run on across
        epochs and wrap to 0 when the caption dataset is exhausted.
        """
        return self.cursor(epoch, step).batch_index

    def resume_cursors(self, epoch: int, step: int) -> dict[str, DataCursor]:
        """For each used task, the next batch it will yield when resuming at (epoch, step).

        `batch_index` is the number of batches of that pass already consumed: a trainer that
        re-opens the task's dataset for pass `pass_index` skips that many batches. A dense task
        whose epoch pass is used up shows batch 0 of the next pass.
        """
        self.global_step(epoch, step)  # range check
        out = {}
        for task in self.config.tasks_used():
            drawn = self._drawn_before(task, epoch, step)
            n = self.pass_lengths[task]
            out[task] = DataCursor(task, drawn // n, drawn % n)
        return out

    # ---- checkpoint state ---------------------------------------------------------------
    @property
    def next_position(self) -> tuple[int, int]:
        """(epoch, step) of the next step to run, as recorded by mark_done / set_position."""
        return self.position(self._next_global)

    def set_position(self, epoch: int, step: int) -> None:
        """Record that (epoch, step) is the next step to run."""
        self._next_global = self.global_step(epoch, step)

    def mark_done(self, epoch: int, step: int) -> None:
        """Record that step (epoch, step) finished; the next step to run follows it."""
        self._next_global = self.global_step(epoch, step) + 1

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: the next position to run, the config and its fingerprint."""
        epoch, step = self.next_position
        return {"format": _STATE_FORMAT, "algorithm": SCHEDULE_ALGORITHM_VERSION,
                "fingerprint": self.fingerprint, "config": self.config.to_dict(),
                "epoch": epoch, "step": step, "global_step": self._next_global}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position; raise ScheduleMismatchError if it came from another schedule."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ScheduleMismatchError("schedule: state is not a StepSchedule state_dict "
                                        f"(format={state.get('format') if isinstance(state, dict) else None!r})")
        if state.get("fingerprint") != self.fingerprint:
            raise ScheduleMismatchError(
                f"schedule: checkpoint was made with schedule {state.get('fingerprint')} "
                f"(algorithm v{state.get('algorithm')}) but this run's schedule is "
                f"{self.fingerprint} (algorithm v{SCHEDULE_ALGORITHM_VERSION}); "
                f"differences: {_config_diff(state.get('config'), self.config.to_dict())}. "
                "Resume with the checkpoint's schedule config or start a new run.")
        epoch, step, g = state["epoch"], state["step"], state["global_step"]
        if self.global_step(epoch, step) != g:
            raise ScheduleMismatchError(f"schedule: state position (epoch {epoch}, step {step}) "
                                        f"is global step {self.global_step(epoch, step)}, not {g}")
        self._next_global = g

    # ---- checks -------------------------------------------------------------------------
    def _check_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < self.config.epochs:
            raise IndexError(f"schedule: epoch {epoch!r} outside [0, {self.config.epochs})")

    def _check_step(self, epoch: int, step: int) -> None:
        self._check_epoch(epoch)
        n = self._offsets[epoch + 1] - self._offsets[epoch]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < n:
            raise IndexError(f"schedule: step {step!r} outside [0, {n}) of epoch {epoch}")


def _config_diff(saved: Any, current: dict[str, Any]) -> str:
    """Human-readable list of config fields that differ (or the algorithm, if none do)."""
    if not isinstance(saved, dict):
        return "checkpoint has no readable config"
    diffs = [f"{k}: checkpoint {saved.get(k)!r} != now {current.get(k)!r}"
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    return "; ".join(diffs) if diffs else "same config, different schedule algorithm version"
