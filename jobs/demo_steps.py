"""The demo's steps and numbers, shared by ``python -m jobs.demo`` and ``bench/ablations.py``.

The world, the towers, the pseudo masks, the evaluations and the summary a demo run is made of,
each calling a job's ``main`` as a user would; the demo's recipe and the targets it is held to.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pipelines.evaluate.tasks import EVAL_TASKS as TASK_TABLE

# The demo's training recipe for the tiny network on the demo world, chosen by measured runs on 2 CPU
# cores (issue #11): the paper's STT recipe with the tiny preset's LR, from the towers pretrained in
# stage 3 (issue #22); 36 epochs of the small world (972 optimizer steps) is what fits the
# 15-minute budget of `make demo` with set-up. On the small
# world the COCO-style val PQ after 12 / 24 / 36 epochs was about 1 / 3 / 10; a 4032-step run on the
# medium world reached 27 (things 7, stuff 86): things are the slow part (same-colour shapes are
# confused), see README "The demo".
DEMO_TRAIN = ["train.epochs=36", "train.eval_every=3", "train.checkpoint_sub_epochs=false", "cluster.rows_per_shard=32",
              "train.log_every=10"]
DEMO_WORLD = "small"
# the tower pretraining of the demo (jobs/pretrain.py settings), measured on the demo world: see README
DEMO_PRETRAIN = ["pretrain.image_size=64", "pretrain.epochs=12"]
# the evaluation tasks the synthetic world has a split for, from the evaluation task table
EVAL_TASKS = tuple(name for name, task in TASK_TABLE.items() if task.layout.world_key)
# the targets the demo is held to (fractions), on the default world and seed
TARGETS = {"coco_panoptic.pq": 0.40, "ade20k_panoptic.pq": 0.25, "ade20k_panoptic.pq_th": 0.15,
           "ade20k_panoptic.pq_st": 0.15, "ade20k_panoptic.unseen.pq": 0.05, "lvis.unseen.AP": 0.15,
           "lvis.AP": 0.30}  # issue #22


def stage(name: str, times: dict, fn, *args):
    """Run ``fn(*args)`` and record its seconds in ``times[name]``."""
    t0 = time.time()
    result = fn(*args)
    times[name] = round(time.time() - t0, 1)
    return result


def prepare_world(out: str, seed: int, size: str, times: dict) -> str:
    """Generate the synthetic world under ``OUT/world`` (reused when it is already there)."""
    from vloss.data.synthetic import format_summary, generate_world
    from vloss.data.synthetic.files import GENERATOR_VERSION

    world = os.path.join(out, "world")
    info = Path(world) / "world.json"
    if info.exists():
        old = json.loads(info.read_text())
        if (old.get("generator_version"), old.get("seed"), old.get("size_preset")) == (GENERATOR_VERSION, seed, size):
            print(f"reusing {world} (delete it to regenerate)")
            return world
        print(f"{world} is another world (generator version {old.get('generator_version')}, seed "
              f"{old.get('seed')}, size {old.get('size_preset')}); regenerating it (version {GENERATOR_VERSION}, "
              f"seed {seed}, size {size})")
    summary = stage("world", times, generate_world, world, seed, None, size, info.exists())
    print(format_summary(summary))
    return world


def prepare_towers(out: str, world: str, workers: int, times: dict, verbose: list[str]) -> str:
    """The tiny towers pretrained on the world's caption corpus under ``OUT/towers`` (a finished run with
    the same corpus and settings is reused: the pretraining job says it is complete)."""
    from jobs import pretrain

    towers = os.path.join(out, "towers")
    settings = [x for o in DEMO_PRETRAIN for x in ("--set", o)]
    code = stage("pretrain", times, pretrain.main, ["--data", world, "--out", towers, "--workers", str(workers),
                                                     "--overwrite", *settings, *verbose])
    if code:
        raise RuntimeError(f"pretraining the towers failed (exit {code}); see the lines above and {towers}")
    return towers


def prepare_pseudo_masks(out: str, world: str, times: dict, verbose: list[str]) -> str:
    """Pseudo masks for the world's Objects365-style boxes (``box`` backend) under ``OUT/pseudo_masks``."""
    from jobs import pseudo_masks
    from vloss.data.synthetic import load_world

    o365 = {k: str(v) for k, v in load_world(world)["paths"]["objects365"].items()}
    pm_out = os.path.join(out, "pseudo_masks")
    stage("pseudo_masks", times, pseudo_masks.main, [
        "--annotations", o365["train_json"], "--images", o365["train_images"], "--out", pm_out, "--backend", "box",
        "--set", "rows_per_shard=32", "--eval-truth", o365["train_truth_masks"], *verbose])
    return pm_out


def evaluate_all(checkpoint: str, world: str, out: str, times: dict, verbose: list[str]) -> None:
    """The real evaluation job on the COCO-, ADE20K- and LVIS-style val sets, into ``OUT/eval/TASK``."""
    from jobs import evaluate

    for task in EVAL_TASKS:
        code = stage(f"evaluate_{task}", times, evaluate.main, ["--task", task, "--checkpoint", checkpoint, "--data",
                                                                 world, "--out", os.path.join(out, "eval", task),
                                                                 *verbose])
        if code:
            raise RuntimeError(f"evaluation of {task} failed (exit {code}); see the lines above")


def best_checkpoint(run_dir: str) -> str:
    """The run's best checkpoint by validation PQ (the last one when validation was off)."""
    with open(os.path.join(run_dir, "result.json")) as f:
        result = json.load(f)
    ckpt = result.get("best_checkpoint") or result.get("checkpoint")
    if not ckpt:
        raise RuntimeError(f"training in {run_dir} reported no checkpoint")
    return ckpt


def summarize(out: str, world: str, checkpoint: str, times: dict) -> dict:
    """The demo's numbers: per val set, all / seen / unseen classes, and the targets they meet."""
    from vloss.eval.lvis_eval import lvis_mask_ap
    from vloss.eval.open_vocab import subset_pq

    info = json.loads((Path(world) / "world.json").read_text())
    unseen = set(info["classes"]["unseen_things"]) | set(info["classes"]["unseen_stuff"])
    result: dict = {"checkpoint": checkpoint, "seconds": times, "sets": {}}
    for task in ("coco_panoptic", "ade20k_panoptic"):
        ev = Path(out) / "eval" / task
        m = json.loads((ev / "metrics.json").read_text())["metrics"]
        gt = json.loads(Path(json.loads((ev / "predictions" / "manifest.json").read_text())["scored_gt_json"])
                        .read_text())
        names = [c["name"] for c in gt["categories"]]
        things = [c["name"] for c in gt["categories"] if c["isthing"]]
        entry = {"pq": m["All"]["pq"], "pq_th": m["Things"]["pq"], "pq_st": m["Stuff"]["pq"],
                 "seen": subset_pq(m["per_class"], [n for n in names if n not in unseen], things),
                 "unseen": subset_pq(m["per_class"], [n for n in names if n in unseen], things),
                 "unseen_classes": sorted(n for n in names if n in unseen)}
        result["sets"][task] = entry
    ev = Path(out) / "eval" / "lvis"
    m = json.loads((ev / "metrics.json").read_text())["metrics"]
    manifest = json.loads((ev / "predictions" / "manifest.json").read_text())
    gt_path = manifest["scored_gt_json"]
    cats = json.loads(Path(gt_path).read_text())["categories"]
    unseen_ids = [c["id"] for c in cats if c["name"].replace("_", " ") in unseen]
    seen_ids = [c["id"] for c in cats if c["id"] not in set(unseen_ids)]
    results = str(ev / "predictions" / "results.json")
    entry = {k: m[k] for k in ("AP", "AP50", "APr", "APc", "APf")}
    entry["seen"] = {"AP": lvis_mask_ap(gt_path, results, cat_ids=seen_ids)["AP"]} if seen_ids else None
    entry["unseen"] = {"AP": lvis_mask_ap(gt_path, results, cat_ids=unseen_ids)["AP"]} if unseen_ids else None
    result["sets"]["lvis"] = entry

    def get(key: str):
        return summary_value(result, key)

    result["targets"] = {k: {"target": v, "value": get(k), "met": get(k) is not None and get(k) >= v}
                         for k, v in TARGETS.items()}
    return result


def summary_value(summary: dict, key: str):
    """The number at dotted ``key`` under ``summary["sets"]`` (``"ade20k_panoptic.unseen.pq"``); None if absent."""
    node = summary["sets"]
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _pct(v) -> str:
    return "   -  " if v is None else f"{100 * v:6.1f}"


def format_summary_table(s: dict) -> str:
    """The demo's closing tables (percent)."""
    lines = ["", "== results on the synthetic world (not comparable with the paper's real-data numbers)", "",
             "val set        |   PQ   PQ^th  PQ^st | seen: PQ  PQ^th  PQ^st | unseen: PQ  PQ^th  PQ^st",
             "---------------|---------------------|------------------------|-------------------------"]
    for task, label in (("coco_panoptic", "COCO-style"), ("ade20k_panoptic", "ADE20K-style")):
        e = s["sets"][task]
        lines.append(f"{label:<15}|{_pct(e['pq'])}{_pct(e['pq_th'])}{_pct(e['pq_st'])} |"
                     f"   {_pct(e['seen']['pq'])}{_pct(e['seen']['pq_th'])}{_pct(e['seen']['pq_st'])} |"
                     f"     {_pct(e['unseen']['pq'])}{_pct(e['unseen']['pq_th'])}{_pct(e['unseen']['pq_st'])}")
    e = s["sets"]["lvis"]
    lines += ["", "val set        |   AP    APr    APc    APf | seen AP | unseen AP",
              "---------------|----------------------------|---------|----------",
              f"{'LVIS-style':<15}|{_pct(e['AP'])}{_pct(e['APr'])}{_pct(e['APc'])}{_pct(e['APf'])} |"
              f" {_pct((e['seen'] or {}).get('AP'))}  |  {_pct((e['unseen'] or {}).get('AP'))}", ""]
    lines.append("targets: " + ", ".join(f"{k} {'ok' if t['met'] else 'MISSED'} ({_pct(t['value']).strip()} vs "
                                          f"{100 * t['target']:.0f})" for k, t in s["targets"].items()))
    return "\n".join(lines)
