"""What a person sees: a job's console holds its own lines only; Ray's output goes to log files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAY_CHATTER = ("Running Dataset", "logging_progress", "(pid=", "Started a local Ray instance", "INFO ",
               "Reporting training result", "PlacementGroupCleaner")


@pytest.mark.slow
def test_pseudo_mask_job_console_is_clean_and_ray_logs_go_to_files(world, tmp_path):
    o365 = world / "objects365"
    out = tmp_path / "pm"
    cmd = [sys.executable, "-m", "jobs.pseudo_masks", "--annotations", str(o365 / "annotations" / "train.json"),
           "--images", str(o365 / "images" / "train"), "--out", str(out), "--backend", "box",
           "--set", "rows_per_shard=4"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    console = res.stdout + res.stderr
    for chatter in RAY_CHATTER:
        assert chatter not in console, chatter
    progress = [line for line in res.stdout.splitlines() if line.startswith("[pseudo-masks] #")]
    assert len(progress) == 1 and "10/10 img 100%" in progress[0]
    log = out / "_logs" / "ray_driver.log"
    assert "Started a local Ray instance" in log.read_text()
    assert (out / "_logs" / "ray_session" / "logs").is_dir()
    assert str(log) in res.stdout  # the job says where the logs went
