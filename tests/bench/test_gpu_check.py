"""``bench/gpu_check.py``: the CPU smoke runs every section (so the GPU check never rots), its FLOP
count matches an independent count, and the peak table, MFU and failure reporting are right."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"
RAY_CHATTER = ("Started a local Ray instance", "(pid=", "Running Dataset", "core_worker.cc", "INFO ",
               "Reporting training result")


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = _load_script()


def _run(out: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own embedded Ray, not the suite's
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


# --------------------------------------------------------------------------- fast


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA GH200 480GB", 989.0), ("NVIDIA H20", 148.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L4", 121.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA L40", 181.0), ("NVIDIA A10", 125.0),
    ("Tesla T4", None), ("Tesla V100-SXM2-16GB", None), ("NVIDIA A10G", None)])
def test_peak_table_matches_device_names(name, tflops):
    assert check.peak_bf16_tflops(name)[0] == tflops


def test_mfu_arithmetic():
    # 2 TFLOP per step, 10 steps in 4 s = 5 TFLOP/s achieved; against a 100 TFLOP/s peak: 5 %
    assert check.mfu(2e12, 10, 4.0, 100.0) == pytest.approx(0.05)
    assert check.mfu(989e12 * 0.4, 1, 1.0, 989.0) == pytest.approx(0.4)
    assert check.mfu(2e12, 10, 4.0, None) is None
    assert check.mfu(2e12, 10, 0.0, 100.0) is None


def test_a_failing_section_is_reported_and_fails_the_run(tmp_path, monkeypatch):
    def boom(ctx):
        raise ValueError("no such thing")

    def missing(ctx):
        raise ModuleNotFoundError("No module named 'open_clip'", name="open_clip")

    monkeypatch.setitem(check.SECTION_FUNCTIONS, "train_step", boom)
    monkeypatch.setitem(check.SECTION_FUNCTIONS, "eval_predictor", missing)
    threads = torch.get_num_threads()
    code = check.main(["--cpu-smoke", "--out", str(tmp_path), "--sections", "train_step,eval_predictor"])
    torch.set_num_threads(threads)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1 and report["ok"] is False
    assert report["sections"]["train_step"]["status"] == "failed: ValueError: no such thing"
    assert report["sections"]["eval_predictor"]["status"].startswith("skipped: open_clip not importable")
    assert "no such thing" in (tmp_path / "logs" / "train_step.log").read_text()  # the traceback is kept


# --------------------------------------------------------------------------- the smoke


def _independent_step_flops(preset: str, batch: int, size: int, num_classes: int, targets: int) -> tuple[int, int]:
    """FLOPs of forward + losses + backward of one panoptic step, and of its forward, counted here
    on other weights and other inputs of the same shapes (FLOPs depend on shapes only)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from vloss.config import resolve
    from vloss.losses import SetCriterion, weighted_total
    from vloss.model import VLOSS
    from vloss.training.step import TaskForward, compute_losses

    job = resolve(preset)
    torch.manual_seed(123)
    step = TaskForward(VLOSS(job.model).train(), {"panoptic": check.class_names(num_classes)},
                       job.model.text.templates, job.loss.contrastive)
    criterion = SetCriterion(job.loss)
    images = torch.rand(batch, 3, size, size)
    tgts = [{"labels": torch.arange(targets) % num_classes, "masks": torch.rand(targets, size, size) > 0.7}
            for _ in range(batch)]

    def loss():
        return weighted_total(compute_losses("panoptic", step("panoptic", images), {"targets": tgts}, job.loss,
                                             criterion), job.loss)

    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as fwd:
            loss()
        with FlopCounterMode(display=False) as full:
            loss().backward()
    return full.get_total_flops(), fwd.get_total_flops()


@pytest.mark.slow
def test_cpu_smoke_runs_every_section_and_counts_flops(tmp_path):
    res = _run(tmp_path)
    console = res.stdout + res.stderr
    assert res.returncode == 0, console[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["mode"] == "cpu-smoke" and report["ok"] is True
    assert report["device"]["type"] == "cpu" and report["versions"]["torch"] == torch.__version__
    assert list(report["sections"]) == list(check.SECTIONS)
    for name, section in report["sections"].items():
        assert section["status"] == "ok", (name, section["status"])
        assert section["seconds"] > 0

    t = report["sections"]["train_step"]
    cfg = report["config"]
    assert (t["preset"], t["batch"], t["size"], t["steps"]) == ("tiny", cfg["batch"], cfg["size"], cfg["steps"])
    assert t["img_per_s"] > 0 and t["peak_memory_mib"] > 0 and t["mfu"] is None
    # the layer we can count by hand: Swin's patch embedding, a 4x4 stride-4 conv from 3 to E channels,
    # counted in the forward and once more in the backward (its weight gradient; the images need none)
    embed = resolve_tiny_embed_dim()
    conv_forward = 2 * t["batch"] * embed * (t["size"] // 4) ** 2 * 3 * 4 * 4
    assert t["flops_patch_embed_conv"] == 2 * conv_forward
    # the whole step, counted again here on other weights and inputs of the same shapes
    step, forward = _independent_step_flops("tiny", t["batch"], t["size"], t["num_classes"], t["targets_per_image"])
    assert t["flops_per_step"] == pytest.approx(step, rel=0.01)
    assert t["flops_forward_per_step"] == pytest.approx(forward, rel=0.01)
    assert 2.0 * forward < t["flops_per_step"] < 3.2 * forward  # backward counted: about twice the forward
    assert t["achieved_tflops"] == pytest.approx(t["flops_per_step"] * t["img_per_s"] / t["batch"] / 1e12, rel=1e-6)

    r = report["sections"]["ray_train"]
    assert r["steps"] == cfg["ray_steps"] and r["workers"] == 1 and r["gpus_per_worker"] == 0
    assert r["img_per_s"] > 0 and Path(r["checkpoint"]).is_dir()
    assert set(r["tasks"]) == {"detection", "captions", "panoptic"}

    p = report["sections"]["pseudo_masks"]
    assert p["teacher"] == "maskrcnn_resnet50_fpn" and p["teacher_weights"].startswith("random init")
    assert p["images"] > 0 and p["boxes"] >= p["images"]
    assert p["plain_img_per_s"] > 0 and p["ray_img_per_s"] > 0
    assert p["ratio_ray_vs_plain"] == pytest.approx(p["ray_img_per_s"] / p["plain_img_per_s"])

    e = report["sections"]["eval_predictor"]
    assert e["img_per_s"] > 0 and e["timed_images"] > 0 and e["segments"] > 0

    # one table on the console, and nothing of Ray's
    assert console.count("| section | metric | value |") == 1
    for name in check.SECTIONS:
        assert f"| {name} | status | ok" in res.stdout
    for chatter in RAY_CHATTER:
        assert chatter not in console, chatter
    assert (tmp_path / "logs" / "jobs.train.log").read_text().count("[train] step") >= 1


def resolve_tiny_embed_dim() -> int:
    from vloss.config import preset

    return preset("tiny").model.backbone.embed_dim


@pytest.mark.slow
def test_without_ray_the_ray_parts_are_skipped_not_failed(tmp_path):
    """The GPU image has no Ray: its sections are skipped with the reason, the plain loop still measured."""
    hide = tmp_path / "hide_ray"
    hide.mkdir()
    (hide / "ray.py").write_text("raise ModuleNotFoundError(\"No module named 'ray' (hidden by the test)\", "
                                 "name='ray')\n")
    pythonpath = os.pathsep.join([str(hide)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    res = _run(tmp_path / "out", "--sections", "ray_train,pseudo_masks", env_extra={"PYTHONPATH": pythonpath})
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    ray_train, pm = report["sections"]["ray_train"], report["sections"]["pseudo_masks"]
    assert ray_train["status"].startswith("skipped: ray not importable"), ray_train["status"]
    assert pm["status"].startswith("skipped: the Ray job: ray not importable"), pm["status"]
    assert pm["plain_img_per_s"] > 0 and "ray_img_per_s" not in pm
    assert report["ok"] is True
