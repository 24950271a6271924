"""PQ over a subset of classes, against a hand-computed case and against pq_compute's own averages."""

from __future__ import annotations

import pytest

from vloss.eval.open_vocab import subset_pq

PER_CLASS = {
    "sky": {"pq": 0.8, "sq": 0.8, "rq": 1.0, "tp": 2, "fp": 0, "fn": 0},
    "red ring": {"pq": 0.5, "sq": 0.75, "rq": 2 / 3, "tp": 1, "fp": 1, "fn": 0},
    "blue star": {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 3},
    "snow": {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 0, "fn": 0},  # does not occur
}


def test_subset_pq_by_hand():
    seen = subset_pq(PER_CLASS, ["sky", "red ring"], things=["red ring", "blue star"])
    assert seen["pq"] == pytest.approx(0.65) and seen["n"] == 2
    assert (seen["pq_th"], seen["pq_st"]) == (pytest.approx(0.5), pytest.approx(0.8))
    unseen = subset_pq(PER_CLASS, ["blue star", "snow", "not in the set"], things=["blue star"])
    assert (unseen["pq"], unseen["n"], unseen["pq_st"], unseen["n_st"]) == (0.0, 1, None, 0)


def test_subset_of_everything_equals_the_scorers_average(shared_data):
    """Over all classes the subset average is pq_compute's own All / Things / Stuff."""
    from vloss.eval.pq import pq_compute

    d = shared_data / "coco-panoptic-sample"
    m = pq_compute(d / "panoptic_examples.json", d / "panoptic_examples", d / "panoptic_examples.json",
                   d / "panoptic_examples", workers=1)
    import json

    cats = json.loads((d / "panoptic_examples.json").read_text())["categories"]
    things = [c["name"] for c in cats if c["isthing"]]
    got = subset_pq(m["per_class"], [c["name"] for c in cats], things)
    assert got["pq"] == pytest.approx(m["All"]["pq"]) and got["n"] == m["All"]["n"]
    assert got["pq_th"] == pytest.approx(m["Things"]["pq"]) and got["pq_st"] == pytest.approx(m["Stuff"]["pq"])
