"""A miniature of the paper's ablations (Tables 3 and 4) on the demo's synthetic world.

Every row is the recipe of :mod:`vloss.recipes` applied to the ``tiny`` network (the same
switches as the paper-scale row), trained through the real ``jobs.train`` (Ray Train) on the
demo world with the demo's own recipe (``jobs.demo_steps.DEMO_TRAIN``), then scored by the real
``jobs.evaluate`` on the COCO-style and ADE20K-style val sets (PQ) and the LVIS-style one (mask
AP), split into classes training annotations name (seen) and classes they never name (unseen).

Same compute: every row trains (about) the same number of optimizer steps as the full VLOSS
recipe with the demo's epochs. A row's schedule decides how many epochs that buys (the
panoptic-only Mask2Former row sees more COCO epochs, the "pretrain" row splits them between its
two stages); the epochs are chosen to bring each row's step count closest to the budget and the
table prints the steps each row actually took. This is our reading of "same compute"; the paper
compares rows at the same epoch count (12), which on the synthetic world would give rows very
different step counts.

Every row starts from the same towers, pretrained CLIP-style on the world's caption corpus by the
demo's own stage (``jobs.demo.prepare_towers``: the real ``jobs.pretrain``), as every row of the paper
starts from ImageNet Swin-T and CLIP text weights (Sec. 4.1). One row the paper implies but does not
print is added: the full VLOSS recipe with both towers trained from scratch (``vloss_scratch``), which
shows what the pretrained towers buy, on unseen classes above all.

Each row runs with ``--seeds`` (default 0 and 1: the network init, data order and augmentation
seeds), and the table shows mean ± half the spread (max-min)/2 over the seeds.

    .venv/bin/python bench/ablations.py [--out ablations_out] [--seeds 0 1] [--recipes t3_stt ...]
                                        [--write docs/ABLATIONS.md]

Runs are resumable: a row whose ``OUT/rows/NAME_sSEED/summary.json`` exists is not run again.
Minutes per row on 2 CPU cores; not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs import demo_steps as demo  # noqa: E402
from vloss.recipes import RECIPES, build_recipe  # noqa: E402

TABLE3 = ("t3_mask2former", "t3_o365", "t3_pos_cls", "t3_stt", "t3_vloss")
TABLE4 = ("t4_mixing", "t4_pretrain", "t4_stt")
SCRATCH = "vloss_scratch"  # t3_vloss with both towers from scratch: the row the paper implies (issue #22)
SCRATCH_OF = "t3_vloss"
REFERENCE = "t3_vloss"  # the full VLOSS recipe: its step count at the demo's epochs is the budget
COLUMNS = (("coco_panoptic", "pq", "COCO PQ"), ("ade20k_panoptic", "pq", "ADE PQ"),
           ("ade20k_panoptic", "seen.pq", "ADE seen PQ"), ("ade20k_panoptic", "unseen.pq", "ADE unseen PQ"),
           ("ade20k_panoptic", "pq_th", "ADE PQ^th"), ("ade20k_panoptic", "pq_st", "ADE PQ^st"),
           ("lvis", "AP", "LVIS AP"), ("lvis", "seen.AP", "LVIS seen AP"), ("lvis", "unseen.AP", "LVIS unseen AP"))

# the paper's ordering each table claims, as (better, worse) pairs of recipes on ADE20K PQ
PAPER_ORDER = {
    "t3_o365": ("t3_mask2former", "Table 3: adding O365 pseudo masks lowers PQ^all (9.8 vs 11.0) and raises PQ^th"),
    "t3_pos_cls": ("t3_o365", "Table 3: positive-only L_cls on detection batches improves on + O365 (10.2 vs 9.8)"),
    "t3_stt": ("t3_pos_cls", "Table 3: switchable training improves on mixing (13.8 vs 10.2)"),
    "t3_vloss": ("t3_stt", "Table 3: the image-text contrastive loss improves further (15.4 vs 13.8)"),
    "t4_mixing": (None, "Table 4: mixing is the weakest way to combine the data (10.2)"),
    "t4_pretrain": ("t4_mixing", "Table 4: pretraining on detection beats mixing (13.9 vs 10.2)"),
    "t4_stt": ("t4_pretrain", "Table 4: STT beats pretraining (15.4 vs 13.9)"),
}


def recipe_of(name: str) -> str:
    """The recipe of :mod:`vloss.recipes` a table row trains (the scratch row trains ``t3_vloss``)."""
    return SCRATCH_OF if name == SCRATCH else name


def row_label(name: str) -> str:
    """The row's name in the table: the paper's row name, or the scratch row's own."""
    return "VLOSS, towers from scratch" if name == SCRATCH else RECIPES[name].row


def demo_overrides() -> list[str]:
    """The demo's training overrides without its epoch count (the budget sets epochs per row)."""
    return [o for o in demo.DEMO_TRAIN if not o.startswith("train.epochs=")]


def demo_epochs() -> int:
    """The epochs of the demo's STT recipe (``jobs.demo_steps.DEMO_TRAIN``)."""
    for o in demo.DEMO_TRAIN:
        if o.startswith("train.epochs="):
            return int(o.split("=", 1)[1])
    return 12


def total_steps(recipe: str, overrides: list[str], sizes: dict[str, int], workers: int) -> int:
    """Optimizer steps of ``recipe`` on ``tiny`` with ``overrides`` (the schedule, nothing trained)."""
    from pipelines.train.plan import schedule_config
    from pipelines.train.schedule import StepSchedule

    job = build_recipe(recipe, "tiny", overrides)
    return StepSchedule(schedule_config(job, sizes)).total_steps


def epochs_for_budget(recipe: str, base: list[str], sizes: dict[str, int], workers: int,
                      budget: int) -> tuple[list[str], int]:
    """The epoch overrides that bring ``recipe`` closest to ``budget`` steps, and its steps then."""
    best: tuple[int, list[str], int] | None = None
    for e in range(1, 200):
        ep = ["train.epochs=" + str(2 * e), "train.pretrain_epochs=" + str(e)] \
            if build_recipe(recipe, "tiny", base).train.schedule == "pretrain" else ["train.epochs=" + str(e)]
        steps = total_steps(recipe, base + ep, sizes, workers)
        if best is None or abs(steps - budget) < best[0]:
            best = (abs(steps - budget), ep, steps)
        if steps > budget:
            break
    assert best is not None
    return best[1], best[2]


def run_row(name: str, seed: int, world: str, pm: str, out: Path, epochs: list[str], workers: int,
            validate: bool, verbose: list[str], towers: str) -> dict:
    """Train one row with one seed and evaluate its checkpoint; returns the row's summary.

    Args:
        name: a recipe of :mod:`vloss.recipes`, or ``SCRATCH`` (``t3_vloss`` with no tower weights).
        towers: the folder holding the pretrained ``backbone.bin`` and ``text.bin`` every other row starts from.
    """
    from jobs import train

    recipe = recipe_of(name)
    row = out / "rows" / f"{name}_s{seed}"
    if (row / "summary.json").exists():
        return json.loads((row / "summary.json").read_text())
    times: dict = {}
    t0 = time.time()
    sets = demo_overrides() + epochs + [f"seed={seed}", f"input.seed={seed}"] \
        + ([] if validate else ["train.eval_every=0"])
    start = ["--from-scratch"] if name == SCRATCH else \
        [x for w in (f"model.backbone.weights={towers}/backbone.bin", f"model.text.weights={towers}/text.bin")
         for x in ("--set", w)]
    args = ["--recipe", recipe, "--config", "tiny", *start, "--data", world, "--pseudo-masks", pm,
            "--out", str(row / "run"), "--workers", str(workers), *[x for o in sets for x in ("--set", o)], *verbose]
    code = train.main(args)
    if code:
        raise RuntimeError(f"{recipe} seed {seed}: training failed (exit {code}); see {row / 'run'}")
    times["train"] = round(time.time() - t0, 1)
    ckpt = demo.best_checkpoint(str(row / "run"))
    demo.evaluate_all(ckpt, world, str(row), times, verbose)
    summary = demo.summarize(str(row), world, ckpt, times)
    result = json.loads((row / "run" / "result.json").read_text())
    summary["recipe"], summary["row"], summary["seed"], summary["overrides"] = recipe, name, seed, sets
    summary["start"] = "scratch" if name == SCRATCH else "pretrained towers"
    summary["optimizer_steps"] = result.get("optimizer_steps") or result.get("metrics", {}).get("optimizer_steps")
    (row / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _get(summary: dict, task: str, key: str):
    return demo.summary_value(summary, f"{task}.{key}")


def _cell(values: list) -> str:
    vals = [100 * v for v in values if v is not None]
    if not vals:
        return "-"
    mean = statistics.fmean(vals)
    return f"{mean:.1f} ± {(max(vals) - min(vals)) / 2:.1f}" if len(vals) > 1 else f"{mean:.1f}"


def _mean(summaries: list[dict], task: str, key: str) -> float | None:
    vals = [_get(s, task, key) for s in summaries if _get(s, task, key) is not None]
    return statistics.fmean(vals) if vals else None


def _half_spread(summaries: list[dict], task: str, key: str) -> float:
    vals = [_get(s, task, key) for s in summaries if _get(s, task, key) is not None]
    return (max(vals) - min(vals)) / 2 if len(vals) > 1 else 0.0


def compare(better: list[dict], worse: list[dict], task: str = "ade20k_panoptic", key: str = "pq") -> str:
    """Whether ``better`` beats ``worse`` beyond the seeds' spread: "held", "reversed" or "within the seed spread"."""
    a, b = _mean(better, task, key), _mean(worse, task, key)
    if a is None or b is None:
        return "not measured"
    margin = _half_spread(better, task, key) + _half_spread(worse, task, key)
    if a - b > margin:
        return "held"
    if b - a > margin:
        return "reversed"
    return "within the seed spread"


def verdict(name: str, by_recipe: dict[str, list[dict]]) -> str:
    """One sentence: did the paper's ordering for this row hold on the synthetic world (ADE PQ)?

    An ordering "held" when the means differ in the paper's direction by more than the two rows'
    half-spreads over seeds together, is "reversed" when they differ the other way by that much, and
    is "within the seed spread" otherwise.
    """
    worse, claim = PAPER_ORDER.get(name, (None, ""))
    mine = _mean(by_recipe[name], "ade20k_panoptic", "pq")
    if name == SCRATCH:
        if REFERENCE not in by_recipe:
            return "Not in the paper (every row there starts from pretrained towers); no pretrained row measured here."
        parts = []
        for task, key, label in (("ade20k_panoptic", "pq", "ADE PQ"), ("ade20k_panoptic", "unseen.pq", "ADE unseen PQ"),
                                 ("lvis", "unseen.AP", "LVIS unseen AP")):
            a, b = _mean(by_recipe[REFERENCE], task, key), _mean(by_recipe[name], task, key)
            if a is not None and b is not None:
                parts.append(f"{label} {100 * a:.1f} from pretrained towers vs {100 * b:.1f} from scratch "
                             f"({compare(by_recipe[REFERENCE], by_recipe[name], task, key)})")
        return ("Not in the paper, which always starts from ImageNet/CLIP towers; pretrained better than scratch: "
                + "; ".join(parts) + ".")
    if name == "t3_mask2former":
        return "Table 3 row 1, the reference the other rows are compared with."
    if name == "t4_mixing":
        others = [r for r in ("t4_pretrain", "t4_stt") if r in by_recipe]
        if mine is None or not others:
            return f"{claim}; not measured here."
        parts = [f"{RECIPES[r].row} {100 * (_mean(by_recipe[r], 'ade20k_panoptic', 'pq') or 0):.1f}: "
                 f"{compare(by_recipe[r], by_recipe[name])}" for r in others]
        return f"{claim}; here {100 * mine:.1f}, against " + ", ".join(parts) + "."
    if worse is None or worse not in by_recipe or mine is None:
        return f"{claim}; not measured here."
    ref = _mean(by_recipe[worse], "ade20k_panoptic", "pq") or 0.0
    if name == "t3_o365":
        th, th_ref = (_mean(by_recipe[r], "ade20k_panoptic", "pq_th") or 0.0 for r in (name, worse))
        return (f"{claim}; here PQ^all {100 * mine:.1f} vs {100 * ref:.1f} (lower: "
                f"{compare(by_recipe[worse], by_recipe[name])}), PQ^th {100 * th:.1f} vs {100 * th_ref:.1f} "
                f"(higher: {compare(by_recipe[name], by_recipe[worse], key='pq_th')}).")
    return f"{claim}; here {100 * mine:.1f} vs {100 * ref:.1f}: {compare(by_recipe[name], by_recipe[worse])}."


def format_markdown(by_recipe: dict[str, list[dict]], budget: int, meta: dict) -> str:
    lines = ["# Ablations in miniature: the paper's Tables 3 and 4 on the synthetic world", "",
             "Written by `bench/ablations.py` (" + meta["command"] + f"), {meta['date']}, on {meta['machine']}.",
             "", "**Synthetic world, `tiny` network on 2 CPU cores, every row starting from the same towers "
             "pretrained CLIP-style on the world's caption corpus (`jobs/pretrain.py` with the demo's settings, "
             "the role of the paper's ImageNet Swin-T and CLIP text weights): not comparable with the "
             "paper's real-data numbers**, which are quoted in the last column for the ordering only. "
             f"Every row trains about {budget} optimizer steps (the full VLOSS recipe at {meta['epochs']} epochs; "
             f"the demo trains {demo_epochs()}; the `steps` column gives each row's count), otherwise with the "
             "demo's recipe (`jobs/demo.py` `DEMO_TRAIN`), and its "
             + ("best checkpoint by COCO-style val PQ" if meta["validation"] else "last checkpoint")
             + " is evaluated by the real evaluation job with its documented thresholds. Cells: mean ± (max-min)/2 "
             "over seeds " + ", ".join(map(str, meta["seeds"])) + "; percent. "
             "Seen: classes some training annotation names; unseen: classes none names (ADE20K-style val and "
             "LVIS-style val have both; COCO-style val has only seen classes). At equal optimizer steps a row "
             "with the image-text task (caption ratio 0.5) spends a third of its steps on caption batches, and a "
             "row without detection spends all of them on COCO panoptic: the table compares recipes at equal "
             "steps, not at equal dense images.", ""]
    for title, names in (("Table 3: training data and strategy", TABLE3), ("Table 4: combining the data", TABLE4),
                         ("What the pretrained towers buy (not in the paper)", (REFERENCE, SCRATCH))):
        rows = [n for n in names if n in by_recipe]
        if not rows:
            continue
        lines += [f"## {title}", "",
                  "| row | recipe | steps | " + " | ".join(c[2] for c in COLUMNS) + " | paper ADE PQ |",
                  "|---|---|---|" + "---|" * len(COLUMNS) + "---|"]
        for n in rows:
            ss = by_recipe[n]
            steps = sorted({s.get("optimizer_steps") for s in ss})
            cells = [_cell([_get(s, t, k) for s in ss]) for t, k, _ in COLUMNS]
            lines.append(f"| {row_label(n)} | `{n}` | {'/'.join(map(str, steps))} | " + " | ".join(cells)
                         + f" | {RECIPES[recipe_of(n)].published.get('PQ^all', '-') if n != SCRATCH else '-'} |")
        lines.append("")
        lines += [f"- **{row_label(n)}**: {verdict(n, by_recipe)}" for n in rows]
        lines.append("")
    lines += ["## Wall time", "", "| recipe | seed | steps | train s | evaluation s |", "|---|---|---|---|---|"]
    for n, ss in by_recipe.items():
        for s in ss:
            ev = sum(v for k, v in s["seconds"].items() if k.startswith("evaluate_"))
            lines.append(f"| `{n}` | {s['seed']} | {s.get('optimizer_steps')} | {s['seconds'].get('train')} | "
                         f"{ev:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/ablations.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="ablations_out")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--recipes", nargs="+", default=list(TABLE3 + TABLE4) + [SCRATCH],
                   choices=list(TABLE3 + TABLE4) + [SCRATCH])
    p.add_argument("--world-seed", type=int, default=0, help="the demo world's seed (the demo's default)")
    p.add_argument("--size", default=demo.DEMO_WORLD, choices=["small", "medium"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None,
                   help="the budget: optimizer steps of the full VLOSS recipe at this many epochs (default: the "
                        "demo's)")
    p.add_argument("--no-validation", action="store_true",
                   help="no validation during training: each row is scored at its last step, not its best one")
    p.add_argument("--write", default=None, help="write the markdown table here (e.g. docs/ABLATIONS.md)")
    p.add_argument("--plan-only", action="store_true", help="print each row's epochs and steps, train nothing")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    verbose = ["--verbose"] if a.verbose else []
    times: dict = {}
    world = demo.prepare_world(str(out), a.world_seed, a.size, times)
    pm = demo.prepare_pseudo_masks(str(out), world, times, verbose)
    towers = "" if a.plan_only else demo.prepare_towers(str(out), world, a.workers, times, verbose)

    from pipelines.train.plan import dataset_sizes

    base = [o for o in demo_overrides() if not o.startswith("cluster.")]  # cluster.* is routed by jobs.train
    sizes = dataset_sizes(build_recipe(REFERENCE, "tiny", base), data_root=world, pseudo_masks=pm)
    epochs = a.epochs or demo_epochs()
    budget = total_steps(REFERENCE, base + [f"train.epochs={epochs}"], sizes, a.workers)
    plan = {r: epochs_for_budget(recipe_of(r), base, sizes, a.workers, budget) for r in a.recipes}
    print(f"[ablations] budget {budget} optimizer steps per row; " +
          ", ".join(f"{r}: {' '.join(e)} -> {s} steps" for r, (e, s) in plan.items()), flush=True)
    if a.plan_only:
        return 0
    by_recipe: dict[str, list[dict]] = {}
    t0 = time.time()
    for seed in a.seeds:  # all rows of one seed first: a partial run still has every row once
        done: dict[tuple, dict] = {}  # rows that are the same run (Table 4's "w/ STT" is Table 3's "+ L_con")
        for r in a.recipes:
            key = (RECIPES[recipe_of(r)].overrides, tuple(plan[r][0]), r == SCRATCH)
            if key in done:
                print(f"[ablations] {r} seed {seed}: the same run as an earlier row, reused", flush=True)
                by_recipe.setdefault(r, []).append(done[key])
                continue
            print(f"[ablations] {r} seed {seed} ({time.time() - t0:.0f} s so far)", flush=True)
            row = run_row(r, seed, world, pm, out, plan[r][0], a.workers, not a.no_validation, verbose, towers)
            done[key] = row
            by_recipe.setdefault(r, []).append(row)
    meta = {"command": "`.venv/bin/python bench/ablations.py " + " ".join(argv if argv is not None else sys.argv[1:])
            + "`", "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPU cores, no GPU",
            "seeds": a.seeds, "epochs": epochs, "validation": not a.no_validation}
    text = format_markdown(by_recipe, budget, meta)
    (out / "ABLATIONS.md").write_text(text)
    if a.write:
        Path(a.write).write_text(text)
    print(text)
    print(f"[ablations] done in {time.time() - t0:.0f} s; table: {a.write or out / 'ABLATIONS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
