"""Tests of the training step schedule (pipelines/schedule.py).

The references here are written independently of the implementation: counts from the
drop_last formula, caption placement from its defining property, batch indices by counting
occurrences over the whole run, and plans rebuilt in fresh interpreters.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from pipelines.train.schedule import (
    DataCursor,
    ScheduleConfig,
    ScheduleMismatchError,
    StepSchedule,
    SubEpoch,
    TaskData,
)

REPO = Path(__file__).resolve().parents[3]
MODES = ("stt", "mix", "pretrain", "panoptic")


def make_config(mode: str = "stt", **overrides) -> ScheduleConfig:
    """A small config: detection 8 steps, panoptic 5 steps, captions 6 batches per pass."""
    base = dict(mode=mode, epochs=4, seed=3, caption_ratio=0.5,
                panoptic=TaskData(num_images=21, batch_size=4),   # 21 // 4 = 5 steps
                detection=TaskData(num_images=35, batch_size=4),  # 35 // 4 = 8 steps
                captions=TaskData(num_images=13, batch_size=2))   # 13 // 2 = 6 batches
    base.update(overrides)
    return ScheduleConfig(**base)


def sharded_steps(num_images: int, global_batch: int) -> int:
    """Steps of one pass: each takes the next ``global_batch`` rows while that many are left
    (drop_last). Simulated step by step, not by the closed form."""
    batches, rows = 0, num_images
    while rows >= global_batch:
        rows -= global_batch
        batches += 1
    return batches


def full_run(schedule: StepSchedule) -> list[tuple[int, int, str]]:
    return [(e, s, t) for e in range(schedule.config.epochs)
            for s, t in enumerate(schedule.epoch_plan(e))]


def assert_captions_spread(sub_plan: list[str], dense_task: str, ratio: Fraction) -> None:
    """Defining property: right before every dense step, the captions so far equal
    floor(dense steps so far * ratio), and the sub-epoch ends with floor(total * ratio)."""
    dense = captions = 0
    for task in sub_plan:
        if task == dense_task:
            assert captions == (dense * ratio.numerator) // ratio.denominator
            dense += 1
        else:
            assert task == "captions"
            captions += 1
    assert captions == (dense * ratio.numerator) // ratio.denominator


# ---- counts and ordering per mode --------------------------------------------------------
@pytest.mark.parametrize("workers,ratio", [(1, "0.5"), (2, "0.5"), (3, "0.25"), (2, "0"), (2, "1.5")])
def test_stt_warmup_precedes_cooldown_with_drop_last_counts(workers, ratio):
    # a global batch of 2 per worker (the schedule itself knows only the global batch)
    cfg = make_config(caption_ratio=float(ratio), captions=None if ratio == "0" else TaskData(40, workers),
                      panoptic=TaskData(21, 2 * workers), detection=TaskData(35, 2 * workers))
    sched = StepSchedule(cfg)
    n_det = sharded_steps(35, 2 * workers)
    n_pan = sharded_steps(21, 2 * workers)
    r = Fraction(ratio)
    assert n_det == 35 // (2 * workers) and n_pan == 21 // (2 * workers)
    for epoch in range(cfg.epochs):
        plan = sched.epoch_plan(epoch)
        last_det = max(i for i, t in enumerate(plan) if t == "detection")
        first_pan = min(i for i, t in enumerate(plan) if t == "panoptic")
        assert last_det < first_pan
        warm, cool = sched.sub_epoch_boundaries(epoch)
        assert warm == SubEpoch("warmup", 0, n_det + int(n_det * r))
        assert cool == SubEpoch("cooldown", warm.stop, len(plan))
        ends = [s for s in range(len(plan)) if sched.sub_epoch_end(epoch, s) is not None]
        assert ends == [warm.stop - 1, cool.stop - 1]
        assert sched.sub_epoch_end(epoch, len(plan) - 1) == cool
        assert set(plan[warm.start:warm.stop]) <= {"detection", "captions"}
        assert set(plan[cool.start:cool.stop]) <= {"panoptic", "captions"}
        assert_captions_spread(plan[warm.start:warm.stop], "detection", r)
        assert_captions_spread(plan[cool.start:cool.stop], "panoptic", r)
        expected = Counter(detection=n_det, panoptic=n_pan, captions=int(n_det * r) + int(n_pan * r))
        assert Counter(plan) == +expected
        assert sched.counts(epoch) == dict(+expected)
        assert sched.steps_in_epoch(epoch) == len(plan)
    assert sched.total_steps == sum(len(sched.epoch_plan(e)) for e in range(cfg.epochs))


def test_half_ratio_is_one_caption_after_every_two_dense_steps():
    plan = StepSchedule(make_config(epochs=1)).epoch_plan(0)
    d, p, c = "detection", "panoptic", "captions"
    assert plan == [d, d, c] * 4 + [p, p, c, p, p, c, p]


def test_mix_is_a_seeded_permutation_of_the_stt_epoch():
    stt = StepSchedule(make_config("stt"))
    mix = StepSchedule(make_config("mix", seed=3))
    again = StepSchedule(make_config("mix", seed=3))
    other = StepSchedule(make_config("mix", seed=4))
    for epoch in range(4):
        plan = mix.epoch_plan(epoch)
        assert Counter(plan) == Counter(stt.epoch_plan(epoch))
        assert mix.counts(epoch) == stt.counts(epoch)
        assert plan == again.epoch_plan(epoch)
        assert plan != other.epoch_plan(epoch)
        assert plan != stt.epoch_plan(epoch)
        assert mix.sub_epoch_boundaries(epoch) == [SubEpoch("mixed", 0, len(plan))]
    # each epoch has its own order
    assert len({tuple(mix.epoch_plan(e)) for e in range(4)}) == 4
    # detection and panoptic really interleave (not two blocks as in STT)
    plan = mix.epoch_plan(0)
    dense = [t for t in plan if t != "captions"]
    switches = sum(1 for a, b in zip(dense, dense[1:]) if a != b)
    assert switches > 1


def test_pretrain_runs_detection_epochs_then_panoptic_finetuning():
    sched = StepSchedule(make_config("pretrain", epochs=5, pretrain_epochs=2))
    for epoch in range(5):
        plan = sched.epoch_plan(epoch)
        dense = "detection" if epoch < 2 else "panoptic"
        n = 8 if epoch < 2 else 5
        assert Counter(plan) == Counter({dense: n, "captions": n // 2})
        assert_captions_spread(plan, dense, Fraction(1, 2))
        assert sched.sub_epoch_boundaries(epoch) == [
            SubEpoch("pretrain" if epoch < 2 else "finetune", 0, len(plan))]
    assert sched.total_steps == 2 * 12 + 3 * 7
    # default: half of the epochs are pretraining
    default = StepSchedule(make_config("pretrain", epochs=4))
    assert [set(default.epoch_plan(e)) - {"captions"} for e in range(4)] == \
        [{"detection"}, {"detection"}, {"panoptic"}, {"panoptic"}]
    for bad in (0, 5, 7):
        with pytest.raises(ValueError, match="pretrain_epochs"):
            StepSchedule(make_config("pretrain", epochs=5, pretrain_epochs=bad))


@pytest.mark.parametrize("ratio", [0.5, 0.0])
def test_panoptic_baseline_uses_no_detection(ratio):
    cfg = make_config("panoptic", detection=None, caption_ratio=ratio,
                      captions=TaskData(13, 1) if ratio else None)
    sched = StepSchedule(cfg)
    for epoch in range(cfg.epochs):
        plan = sched.epoch_plan(epoch)
        assert Counter(plan) == +Counter(panoptic=5, captions=int(5 * ratio))
    assert cfg.tasks_used() == (("panoptic", "captions") if ratio else ("panoptic",))


# ---- identical everywhere ----------------------------------------------------------------
def plans_digest(schedules) -> str:
    blob = json.dumps([[s.epoch_plan(e) for e in range(s.config.epochs)] for s in schedules])
    return hashlib.sha256(blob.encode()).hexdigest()


_CHILD = """
import hashlib, json, sys
sys.path.insert(0, {repo!r})
from pipelines.train.schedule import ScheduleConfig, StepSchedule
assert "ray" not in sys.modules, "pipelines.train.schedule imported ray"
cfgs = json.loads({cfgs!r})
scheds = [StepSchedule(ScheduleConfig.from_dict(c)) for c in cfgs]
blob = json.dumps([[s.epoch_plan(e) for e in range(s.config.epochs)] for s in scheds])
print(hashlib.sha256(blob.encode()).hexdigest())
"""


def test_plans_identical_in_independent_processes_without_ray():
    """Ranks are separate processes with their own string-hash seeds; plans must not differ."""
    cfgs = [make_config(m, epochs=6) for m in MODES]
    local = plans_digest([StepSchedule(c) for c in cfgs])
    code = _CHILD.format(repo=str(REPO), cfgs=json.dumps([c.to_dict() for c in cfgs]))
    for hash_seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120)
        assert out.stdout.strip() == local


def test_plans_identical_across_instances_calls_and_cache_eviction():
    cfg = make_config("mix", epochs=9)
    a, b = StepSchedule(cfg), StepSchedule(cfg)
    first = [a.epoch_plan(e) for e in range(9)]
    assert first == [b.epoch_plan(e) for e in reversed(range(9))][::-1]
    assert first == [a.epoch_plan(e) for e in range(9)]  # after eviction of early epochs
    assert [a.task_at(e, s) for e in range(9) for s in range(a.steps_in_epoch(e))] == \
        [t for p in first for t in p]
    # mutating the caller's config afterwards does not change a built schedule
    cfg.seed = 99
    assert a.epoch_plan(0) == first[0]


# ---- positions and resume ----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_positions_and_iter_from_resume_mid_epoch(mode):
    sched = StepSchedule(make_config(mode))
    full = full_run(sched)
    assert len(full) == sched.total_steps
    assert list(sched) == full
    for g, (e, s, t) in enumerate(full):
        assert sched.position(g) == (e, s)
        assert sched.global_step(e, s) == g
        assert sched.task_at(e, s) == t
    assert sched.position(sched.total_steps) == (sched.config.epochs, 0)
    for k in (0, 1, 7, 12, 13, len(full) // 2, len(full) - 1, len(full)):
        e, s = sched.position(k)
        assert list(sched.iter_from(e, s)) == full[k:]
    assert list(sched.epoch_offsets) == [sched.global_step(e, 0) for e in range(4)] + [len(full)]
    with pytest.raises(IndexError):
        sched.position(len(full) + 1)
    with pytest.raises(IndexError):
        sched.task_at(0, sched.steps_in_epoch(0))
    with pytest.raises(IndexError):
        sched.epoch_plan(sched.config.epochs)


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip_resumes_at_the_next_step(mode):
    cfg = make_config(mode)
    sched = StepSchedule(cfg)
    full = full_run(sched)
    k = 17  # lands mid-epoch in every mode
    it = sched.iter_from(0, 0)
    for _ in range(k):
        e, s, _task = next(it)
        sched.mark_done(e, s)
    state = json.loads(json.dumps(sched.state_dict()))  # must survive JSON
    assert state["global_step"] == k and (state["epoch"], state["step"]) == sched.position(k)

    resumed = StepSchedule(ScheduleConfig.from_dict(state["config"]))
    resumed.load_state_dict(state)
    assert resumed.next_position == sched.position(k)
    assert list(resumed.iter_from(*resumed.next_position)) == full[k:]
    # finished run: resumes as a no-op
    resumed.set_position(cfg.epochs, 0)
    assert list(resumed.iter_from(*resumed.next_position)) == []


def test_fingerprint_mismatch_refuses_to_resume():
    state = StepSchedule(make_config("stt")).state_dict()
    for change in (dict(mode="mix"), dict(seed=4), dict(caption_ratio=0.25),
                   dict(epochs=5), dict(detection=TaskData(99, 2))):
        other = StepSchedule(make_config(**{"mode": "stt", **change}))
        field = next(iter(change))
        with pytest.raises(ScheduleMismatchError, match=field):
            other.load_state_dict(state)
    with pytest.raises(ScheduleMismatchError, match="format"):
        StepSchedule(make_config("stt")).load_state_dict({"epoch": 0})
    tampered = dict(state, global_step=state["global_step"] + 3)
    with pytest.raises(ScheduleMismatchError, match="global step"):
        StepSchedule(make_config("stt")).load_state_dict(tampered)
    # a field the plan ignores (detection sizes in panoptic mode) does not block a resume
    pan_state = StepSchedule(make_config("panoptic")).state_dict()
    StepSchedule(make_config("panoptic", detection=TaskData(1000, 4))).load_state_dict(pan_state)


# ---- data cursors --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_batch_index_matches_counting_occurrences(mode):
    # captions: 6 batches per pass but ~6-10 caption steps per epoch, so the stream wraps
    sched = StepSchedule(make_config(mode))
    pass_len = {"detection": 8, "panoptic": 5, "captions": 6}
    drawn = Counter()  # batches drawn per task since the start of the run
    per_epoch = Counter()
    last_epoch = -1
    for e, s, task in full_run(sched):
        if e != last_epoch:
            per_epoch, last_epoch = Counter(), e
        assert sched.resume_cursors(e, s) == {
            t: DataCursor(t, drawn[t] // pass_len[t], drawn[t] % pass_len[t])
            for t in sched.config.tasks_used()}
        cursor = sched.cursor(e, s)
        assert cursor.task == task
        if task == "captions":  # one continuous stream, cycled when it runs out
            assert cursor == DataCursor(task, drawn[task] // 6, drawn[task] % 6)
        else:  # one pass per epoch in which the task appears
            assert cursor.batch_index == per_epoch[task]
        assert sched.batch_index(e, s) == cursor.batch_index
        drawn[task] += 1
        per_epoch[task] += 1
    assert drawn["captions"] > 6 or sched.config.caption_ratio == 0  # wrap-around was exercised


# ---- config checks -----------------------------------------------------------------------
def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"detection has 3 images.*global batch of 4"):
        StepSchedule(make_config(detection=TaskData(3, 4)))
    with pytest.raises(ValueError, match="`detection` is not set"):
        StepSchedule(make_config("stt", detection=None))
    with pytest.raises(ValueError, match="`captions` is not set"):
        StepSchedule(make_config("stt", captions=None))
    with pytest.raises(ValueError, match="mode"):
        StepSchedule(make_config("switchable"))
    with pytest.raises(ValueError, match="caption_ratio"):
        StepSchedule(make_config(caption_ratio=-0.5))
    with pytest.raises(ValueError, match="panoptic.batch_size"):
        StepSchedule(make_config(panoptic=TaskData(21, 0)))
    with pytest.raises(ValueError, match="unknown"):
        ScheduleConfig.from_dict({"mode": "stt", "epoch": 3})


def test_config_round_trip_and_paper_preset():
    cfg = make_config("pretrain", pretrain_epochs=1)
    assert ScheduleConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ScheduleConfig.from_dict(cfg.to_dict()).fingerprint() == cfg.fingerprint()
    from pipelines.train.plan import schedule_config
    from vloss.config import job_preset

    p = schedule_config(job_preset("paper"), {"panoptic": 118_287, "detection": 600_000, "captions": 118_287})
    assert p.epochs == 12 and p.mode == "stt"
    assert p.panoptic.batch_size == p.detection.batch_size == 32 and p.captions.batch_size == 512
    sched = StepSchedule(p)
    assert sched.pass_lengths == {"panoptic": 118_287 // 32, "detection": 600_000 // 32,
                                  "captions": 118_287 // 512}
