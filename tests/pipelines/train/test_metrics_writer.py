"""metrics.jsonl holds every step once after a resume from an earlier checkpoint (issue #28 item 7)."""

from __future__ import annotations

import json

from pipelines.train.metrics import MetricsWriter


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_resumed_run_replaces_the_steps_it_logs_again(tmp_path):
    w = MetricsWriter(str(tmp_path))
    for s in (5, 10, 15, 20):
        w.write({"step": s, "task": "panoptic", "loss": float(s)})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "ta')  # a line cut by a killed driver
    # a new driver resumes from the checkpoint at step 10 and logs 15, 20, 25 again
    w2 = MetricsWriter(str(tmp_path))
    for s in (15, 20, 25):
        w2.write({"step": s, "task": "panoptic", "loss": -float(s)})
    assert _steps(tmp_path / "metrics.jsonl") == [5, 10, 15, 20, 25]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [5.0, 10.0, -15.0, -20.0, -25.0]
