"""Exercise and time every CUDA path of the project in one run; print one table and write JSON.

Four sections, each timed on its own. A section that raises is caught and shown as
``failed: <error>`` (the script then exits 1 after the table); a section that needs a package
this Python lacks (the GPU image has no ``ray``, ``open_clip``, ``ftfy``, ``pycocotools``) is
shown as ``skipped: <package> not importable``, which is not a failure.

1. ``train_step``: a training step of the preset (``paper`` at 768x768 on a GPU) with the real
   parts: :class:`~vloss.training.step.TaskForward` (class embeddings + network) and
   :func:`~vloss.training.step.compute_losses` (Hungarian matching, cls / BCE / dice), Eq. 6,
   backward, gradient clipping and AdamW with the trainer's parameter groups, under the run's
   autocast (``train.amp=auto``: bf16 on CUDA, off on CPU). ``--warmup`` untimed and ``--steps``
   timed steps give images/s and peak memory; one further untimed step under
   ``torch.utils.flop_counter.FlopCounterMode`` gives the FLOPs of a step (forward + losses +
   backward), hence achieved TFLOP/s and MFU against the device's dense bf16 peak.
2. ``ray_train``: the training job's entry (``python -m jobs.train``, called in this process) for
   ``--ray-steps`` steps with one Ray Train worker, holding a GPU on CUDA, on a generated
   synthetic world (detection on filled boxes; no validation; one checkpoint at the end).
3. ``pseudo_masks``: the pseudo-mask job's entry (``python -m jobs.pseudo_masks``) with one
   teacher actor, holding a GPU on CUDA, against a plain loop of the same teacher over the same
   images in this process. The teacher is torchvision's Mask R-CNN R50-FPN; without
   ``--teacher-weights`` a randomly initialised one is saved first (nothing can be downloaded;
   the box-conditioned work per image does not depend on the weights).
4. ``eval_predictor``: the evaluation job's predictor (:class:`pipelines.evaluate.predictor.EvalPredictor`,
   the class its Ray actors run) built in this process on the device with a randomly initialised
   network, fed by the job's own decode function over the world's ADE20K-style val images
   (confidence threshold 0 instead of the job's 0.8, which no query of random weights reaches,
   so that segments, PNGs and segment lists are really made).

How the numbers are taken:

* images/s of the train step: batch x timed steps / their wall time (CUDA synchronised after
  every step).
* FLOPs: ``FlopCounterMode`` counts matrix multiplies, convolutions and attention (not
  element-wise ops, norms or softmax; the usual MFU convention). The counted step runs with
  SDPA's math backend, so attention appears as ``bmm`` on every device (the CPU's fused
  attention kernel has no FLOP formula in ``torch.utils.flop_counter``) and CPU and GPU counts
  agree. The backward of the first layer has no input gradient, so backward is less than 2x the
  forward.
* MFU = FLOPs per step x timed steps / timed seconds / the dense bf16 peak of the device
  (:data:`PEAK_BF16_TFLOPS`, matched on the CUDA device name; ``--peak-tflops`` overrides).
  On CPU, or on a device not in the table without ``--peak-tflops``, MFU is n/a.
* peak memory: CUDA: ``torch.cuda.max_memory_allocated()`` over the warm-up and timed steps
  (weights, gradients, AdamW moments, activations); CPU: the peak resident set size of this
  process (``ru_maxrss``, everything the process held so far).
* Ray sections are timed from the job entry's call to its return, Ray already started (a cluster
  is up once); their images/s therefore include actor start-up and model loading. The plain loop
  of section 3 is timed from loading the teacher to its last mask (end to end), and without the
  load (loop only).

``--cpu-smoke`` runs the same code with the ``tiny`` preset, small sizes and few steps on the CPU
(one to two minutes on 2 shared cores); the test suite runs it so the script never rots. Its numbers are not
performance figures. Without a CUDA device and without ``--device cpu`` the script runs the
smoke (so ``make bench`` works on CPU machines).

Usage::

    PYTHONPATH=. python3 bench/gpu_check.py --out gpu_check_out          # a GPU machine (docs/PERFORMANCE.md)
    .venv/bin/python bench/gpu_check.py --cpu-smoke --out /tmp/gpu_check  # CPU smoke
    .venv/bin/python bench/gpu_check.py --sections train_step --batch 8 --peak-tflops 989

Writes ``OUT/gpu_check.json`` (device, versions, settings, every section's numbers) and
``OUT/logs/`` (what each section and job printed, Ray's driver log); the world, the teacher file
and the jobs' outputs go to ``--work`` (default ``OUT/work``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("train_step", "ray_train", "pseudo_masks", "eval_predictor")
# a section that needs a package the environment lacks (the GPU image has no ray, open_clip, ftfy,
# pycocotools, lvis) is skipped, not failed; a missing module of the project itself is a failure
PROJECT_PACKAGES = ("vloss", "pipelines", "jobs", "bench", "tests")

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets, matched in
# order on torch.cuda.get_device_name() (first match wins, so variants come before the family).
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"\bB200\b", 2250.0, "B200"),
    (r"\bGH200\b", 989.0, "GH200"),
    (r"\bH200\b.*\bNVL\b", 835.0, "H200 NVL"),
    (r"\bH200\b", 989.0, "H200 SXM"),
    (r"\bH100\b.*\bNVL\b", 835.0, "H100 NVL"),
    (r"\bH100\b.*\bPCIe\b", 756.0, "H100 PCIe"),
    (r"\bH100\b", 989.0, "H100 SXM"),
    (r"\bH800\b.*\bPCIe\b", 756.0, "H800 PCIe"),
    (r"\bH800\b", 989.0, "H800 SXM"),
    (r"\bH20\b", 148.0, "H20"),
    (r"\bA100\b", 312.0, "A100"),
    (r"\bA800\b", 312.0, "A800"),
    (r"\bA30\b", 165.0, "A30"),
    (r"\bL40S\b", 362.0, "L40S"),
    (r"\bL40\b", 181.0, "L40"),
    (r"\bL4\b", 121.0, "L4"),
    (r"\bA10\b", 125.0, "A10"),
    (r"RTX 4090", 165.0, "RTX 4090"),
)


def peak_bf16_tflops(device_name: str) -> tuple[float | None, str | None]:
    """The dense bf16 peak of a CUDA device from :data:`PEAK_BF16_TFLOPS`.

    Args:
        device_name: ``torch.cuda.get_device_name()``, e.g. ``"NVIDIA H100 80GB HBM3"``.

    Returns:
        (TFLOP/s, the table row's label), or (None, None) for a device not in the table.
    """
    for pattern, tflops, label in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return tflops, label
    return None, None


def mfu(flops_per_step: float, steps: int, seconds: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak.

    Args:
        flops_per_step: FLOPs of one training step (forward + backward).
        steps: timed steps.
        seconds: their wall time.
        peak_tflops: the device's peak in TFLOP/s (None: unknown).

    Returns:
        A fraction (0.42 = 42 %), or None when the peak is unknown or no time was measured.
    """
    if not peak_tflops or seconds <= 0:
        return None
    return flops_per_step * steps / seconds / (peak_tflops * 1e12)


# --------------------------------------------------------------------------- settings


@dataclass
class CheckConfig:
    """What the check runs, and how big.

    Args:
        mode: ``gpu`` (full sizes) or ``cpu-smoke``.
        device: ``cuda`` or ``cpu``.
        preset: network preset of the train step, the Ray Train run and the predictor.
        size: side of the square train-step input.
        batch: images per train step.
        warmup: untimed full-size train steps before the timed ones.
        steps: timed train steps.
        num_classes: class names in the train step's vocabulary (COCO panoptic has 133).
        targets_per_image: target masks per image in the train step.
        ray_steps: steps of the Ray Train run.
        ray_batch: global dense batch of the Ray Train run (paper: 32 over 8 GPUs, 4 per GPU).
        ray_caption_batch: global image-text batch of the Ray Train run (paper: 512 over 8 GPUs).
        ray_log_every: steps between the run's metric rows (its images/s windows).
        ray_task_images: images per pass of the detection and of the panoptic data (so that the
            steps visit detection, image-text and panoptic batches).
        pm_images: Objects365-style images of the pseudo-mask section.
        pm_batch: images per teacher call (the job's default is 4).
        teacher_arch: Mask R-CNN architecture of the teacher.
        teacher_min_size, teacher_max_size: the teacher's resize (torchvision's 800 / 1333).
        teacher_weights: a teacher state dict; None: a randomly initialised one is saved first.
        eval_images: ADE20K-style val images of the predictor section.
        eval_batch: images per predictor call (the evaluation job's default is 2).
        eval_size: shorter side at evaluation (None: the preset's training size, as the job does).
        eval_threshold: the panoptic confidence threshold. The job uses 0.8; no query of a randomly
            initialised network reaches it, so the check uses 0 and segments, PNGs and their
            segment lists are really made.
        peak_tflops: the device's dense bf16 peak (None: look it up by device name).
        threads: torch CPU threads (None: torch's default).
        seed: seed of the networks and the batches.
    """

    mode: str = "gpu"
    device: str = "cuda"
    preset: str = "paper"
    size: int = 768
    batch: int = 4
    warmup: int = 3
    steps: int = 10
    num_classes: int = 133
    targets_per_image: int = 10
    ray_steps: int = 20
    ray_batch: int = 4
    ray_caption_batch: int = 64
    ray_log_every: int = 5
    ray_task_images: int = 16
    pm_images: int = 64
    pm_batch: int = 4
    teacher_arch: str = "maskrcnn_resnet50_fpn"
    teacher_min_size: int = 800
    teacher_max_size: int = 1333
    teacher_weights: str | None = None
    eval_images: int = 32
    eval_batch: int = 2
    eval_size: int | None = None
    eval_threshold: float = 0.0
    peak_tflops: float | None = None
    threads: int | None = None
    seed: int = 0

    def world_sizes(self) -> dict[str, int]:
        """Images per split of the synthetic world the Ray and predictor sections read."""
        return {"coco_panoptic_train": 2 * self.ray_task_images, "coco_panoptic_val": 1,
                "objects365_train": max(self.pm_images, self.ray_task_images),
                "image_text": max(2 * self.ray_caption_batch, 8), "ade20k_val": self.eval_images, "lvis_val": 1}


def smoke_config() -> CheckConfig:
    """``--cpu-smoke``: the same sections with ``tiny`` at small sizes on the CPU (1-2 minutes on 2 shared cores)."""
    return CheckConfig(mode="cpu-smoke", device="cpu", preset="tiny", size=128, batch=2, warmup=1, steps=3,
                       num_classes=133, targets_per_image=4, ray_steps=6, ray_batch=2, ray_caption_batch=4,
                       ray_log_every=2, ray_task_images=4, pm_images=6, pm_batch=2, teacher_min_size=128,
                       teacher_max_size=192, eval_images=4, eval_batch=2, threads=1)


# --------------------------------------------------------------------------- section plumbing


class SkipSection(Exception):
    """A section that cannot run here (a missing optional package); not a failure.

    Args:
        reason: why, in words.
        partial: numbers measured before the skip (kept in the report).
    """

    def __init__(self, reason: str, partial: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.partial = dict(partial or {})


def _missing_package(exc: BaseException) -> str | None:
    """The third-party package whose absence raised ``exc`` (None: some other error)."""
    if isinstance(exc, ModuleNotFoundError):
        name = (exc.name or "").split(".")[0]
        if name and name not in PROJECT_PACKAGES:
            return name
    return None


def _require(*modules: str) -> None:
    """Import ``modules`` or raise :class:`SkipSection` naming the one that is missing."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SkipSection(f"{module} not importable ({exc})") from exc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _fd_redirect(f: Any) -> Any:
    """Point file descriptors 1 and 2 at ``f`` too: Ray's C++ core writes some lines straight to them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        f.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


class Context:
    """What the sections share: settings, folders, the synthetic world, the teacher file, Ray.

    Args:
        cfg: the settings.
        out: output folder (``gpu_check.json``, ``logs/``).
        work: folder for the world, the teacher file and the jobs' outputs (None: ``OUT/work``).
        verbose: show the jobs' and Ray's output on the console instead of the log files.
    """

    def __init__(self, cfg: CheckConfig, out: Path, work: Path | None = None, verbose: bool = False) -> None:
        self.cfg, self.out, self.verbose = cfg, out, verbose
        self.work = work or out / "work"
        self.logs = out / "logs"
        self.device = torch.device(cfg.device)
        self._world: Path | None = None
        self._teacher: tuple[Path, str] | None = None
        self.ray_started = False
        self.profile = False
        self.prepare_s: dict[str, float] = {}

    def world(self) -> Path:
        """The synthetic world (generated once, under ``work/world``)."""
        if self._world is None:
            from vloss.data.synthetic import WorldSizes, generate_world

            t0 = time.perf_counter()
            root = self.work / "world"
            generate_world(root, seed=self.cfg.seed, sizes=WorldSizes(**self.cfg.world_sizes()), overwrite=True)
            self.prepare_s["world"] = round(time.perf_counter() - t0, 2)
            self._world = root
        return self._world

    def teacher(self) -> tuple[Path, str]:
        """(the teacher state-dict file, where it came from): ``--teacher-weights`` or a random init saved here."""
        if self._teacher is None:
            cfg = self.cfg
            if cfg.teacher_weights:
                self._teacher = (Path(cfg.teacher_weights).resolve(), f"file {cfg.teacher_weights}")
            else:
                from vloss.teacher import TeacherArchConfig, build_maskrcnn

                t0 = time.perf_counter()
                torch.manual_seed(cfg.seed)
                model = build_maskrcnn(TeacherArchConfig(cfg.teacher_arch, num_classes=91,
                                                         min_size=cfg.teacher_min_size, max_size=cfg.teacher_max_size))
                path = self.work / f"teacher_{cfg.teacher_arch}_random_init.pth"
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), path)
                del model
                self.prepare_s["teacher"] = round(time.perf_counter() - t0, 2)
                self._teacher = (path, "random init (no --teacher-weights given; saved by this script)")
        return self._teacher

    def start_ray(self) -> None:
        """Start (or join, with ``RAY_ADDRESS``) Ray once, its output going to ``logs/ray``."""
        if self.ray_started:
            return
        from pipelines.common.ray_env import configure_output, ensure_ray

        # Ray's workers start in another folder: a relative PYTHONPATH (``PYTHONPATH=.``) must be absolute
        parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(ROOT)] + [os.path.abspath(p) for p in parts]))
        configure_output(self.verbose, str(self.logs / "ray"))
        t0 = time.perf_counter()
        ensure_ray(os.cpu_count())
        self.prepare_s["ray_start"] = round(time.perf_counter() - t0, 2)
        self.ray_started = True

    def call_job(self, fn: Callable[[list[str]], int], argv: list[str], log_name: str) -> None:
        """Call a job's ``main(argv)``, its console output going to ``logs/LOG_NAME.log``.

        Raises:
            RuntimeError: the job returned a non-zero status (its last line of output in the message).
        """
        log = self.logs / f"{log_name}.log"
        if self.verbose:
            code = fn(argv)
        else:
            with open(log, "a") as f, _fd_redirect(f), contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                code = fn(argv)
        if code:
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()] if log.exists() else []
            raise RuntimeError(f"exit status {code}: {lines[-1] if lines else '(no output)'} (log: {log})")


# --------------------------------------------------------------------------- 1. train step


def make_batch(batch: int, size: int, targets_per_image: int, num_classes: int, seed: int,
               device: torch.device) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """A seeded panoptic batch: normalised-looking images and rectangles as target masks.

    Args:
        batch: images B.
        size: square side S.
        targets_per_image: target masks M per image.
        num_classes: labels are drawn from ``[0, num_classes)``.
        seed: seed of the generator.
        device: where the tensors go.

    Returns:
        (images ``[B, 3, S, S]``, B targets ``{"labels": [M], "masks": [M, S, S] bool}``).
    """
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=gen)
    targets = []
    for _ in range(batch):
        masks = torch.zeros(targets_per_image, size, size, dtype=torch.bool)
        for m in masks:
            y0, x0 = torch.randint(0, size // 2, (2,), generator=gen).tolist()
            h, w = torch.randint(size // 8, size // 2, (2,), generator=gen).tolist()
            m[y0:y0 + h, x0:x0 + w] = True
        labels = torch.randint(0, num_classes, (targets_per_image,), generator=gen)
        targets.append({"labels": labels.to(device), "masks": masks.to(device)})
    return images.to(device), targets


def class_names(n: int) -> list[str]:
    """``n`` distinct class names (their token count, not their words, sets the text tower's cost)."""
    return [f"class {i}" for i in range(n)]


def count_step_flops(forward_loss: Callable[[], torch.Tensor], layer_suffix: str = "patch_embed.proj"
                     ) -> dict[str, int]:
    """FLOPs of one step, counted with ``FlopCounterMode`` under SDPA's math backend.

    Args:
        forward_loss: runs forward + losses and returns the scalar total (a fresh graph per call).
        layer_suffix: a module whose convolution FLOPs (forward + backward) are reported on their own.

    Returns:
        ``{"forward": forward + losses, "step": forward + losses + backward,
        "layer_conv": convolution FLOPs of the module ending in ``layer_suffix``}``.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as fwd:
            total = forward_loss()
        del total
        with FlopCounterMode(display=False) as full:
            total = forward_loss()
            total.backward()
    layer = sum(v for name, ops in full.get_flop_counts().items() if name.endswith(layer_suffix)
                for op, v in ops.items() if str(op).startswith("aten.convolution"))
    return {"forward": int(fwd.get_total_flops()), "step": int(full.get_total_flops()), "layer_conv": int(layer)}


def section_train_step(ctx: Context) -> dict[str, Any]:
    """Section 1: warm-up + timed training steps of the preset; images/s, peak memory, FLOPs, MFU."""
    from vloss.config import resolve
    from vloss.losses import SetCriterion, weighted_total
    from vloss.model import VLOSS
    from vloss.training.optim import build_optimizer
    from vloss.training.step import TaskForward, autocast_context, compute_losses

    cfg, device = ctx.cfg, ctx.device
    job = resolve(cfg.preset)
    torch.manual_seed(cfg.seed)
    model = VLOSS(job.model).to(device).train()
    step_module = TaskForward(model, {"panoptic": class_names(cfg.num_classes)}, job.model.text.templates,
                              job.loss.contrastive)
    optimizer = build_optimizer(model, job.optim)
    autocast, _ = autocast_context(job.train.amp, device)  # auto: bf16 on CUDA, off on CPU
    criterion = SetCriterion(job.loss)
    images, targets = make_batch(cfg.batch, cfg.size, cfg.targets_per_image, cfg.num_classes, cfg.seed, device)

    def forward_loss() -> torch.Tensor:
        with autocast:
            out = step_module("panoptic", images)
        return weighted_total(compute_losses("panoptic", out, {"targets": targets}, job.loss, criterion), job.loss)

    def step() -> None:
        total = forward_loss()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if job.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job.train.grad_clip)
        optimizer.step()

    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(cfg.warmup):
        step()
    _sync(device)
    times = []
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    profile = _profile_steps(step, device, ctx.logs / "train_step_profile.txt") if ctx.profile else None
    if device.type == "cuda":
        peak_mib, peak_kind = torch.cuda.max_memory_allocated() / 2 ** 20, "torch.cuda.max_memory_allocated"
    else:
        peak_mib, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    optimizer.zero_grad(set_to_none=True)
    flops = count_step_flops(forward_loss)
    optimizer.zero_grad(set_to_none=True)
    seconds = sum(times)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        table_peak, label = peak_bf16_tflops(name)
        peak = cfg.peak_tflops or table_peak
        source = "--peak-tflops" if cfg.peak_tflops else (f"table: {label}" if label else
                                                          f"{name} not in the table; pass --peak-tflops")
    else:
        peak, source = None, "n/a on CPU"
    return {"preset": cfg.preset, "size": cfg.size, "batch": cfg.batch, "warmup": cfg.warmup, "steps": cfg.steps,
            "num_classes": cfg.num_classes, "targets_per_image": cfg.targets_per_image,
            "precision": "bf16 autocast" if device.type == "cuda" else "fp32 (autocast off on CPU)",
            "img_per_s": cfg.batch * cfg.steps / seconds, "step_ms_median": 1000 * statistics.median(times),
            "peak_memory_mib": peak_mib, "peak_memory_kind": peak_kind,
            "flops_per_step": flops["step"], "flops_forward_per_step": flops["forward"],
            "flops_patch_embed_conv": flops["layer_conv"],
            "achieved_tflops": flops["step"] * cfg.steps / seconds / 1e12,
            "peak_bf16_tflops": peak, "peak_source": source,
            "mfu": mfu(flops["step"], cfg.steps, seconds, peak) if device.type == "cuda" else None,
            **({"profile": profile} if profile else {})}


def _profile_steps(step: Callable[[], None], device: torch.device, path: Path, steps: int = 3) -> dict[str, Any]:
    """``--profile``: where a train step's time goes, from ``torch.profiler`` over ``steps`` steps.

    Writes the operator tables (sorted by device time and by CPU time) to ``path`` and returns
    the totals: wall time per step, device-busy time per step (sum of kernel times) and their
    ratio, which says whether the step is bound by the device or by the host feeding it.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        wall = (time.perf_counter() - t0) / steps
    events = prof.key_averages()
    dev_attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    busy_us = sum(getattr(e, dev_attr, 0) for e in events) / steps
    sort_dev = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.write_text(events.table(sort_by=sort_dev, row_limit=40) + "\n\n"
                    + events.table(sort_by="cpu_time_total", row_limit=40) + "\n")
    return {"wall_ms_per_step": 1000 * wall, "device_busy_ms_per_step": busy_us / 1000,
            "device_busy_frac": busy_us / 1e6 / wall if wall else None, "table": str(path)}


# --------------------------------------------------------------------------- 2. Ray Train


def section_ray_train(ctx: Context) -> dict[str, Any]:
    """Section 2: ``python -m jobs.train`` for ``ray_steps`` steps, one worker (a GPU on CUDA)."""
    _require("ray", "ray.train.torch", "ray.data")
    from jobs import train

    cfg = ctx.cfg
    world = ctx.world()
    ctx.start_ray()
    run = ctx.work / "ray_train"
    gpus = 1 if ctx.device.type == "cuda" else 0
    # STT epochs of ray_task_images / ray_batch detection steps, then as many panoptic ones, with
    # one image-text step per two dense steps (train.caption_ratio=0.5)
    sets = [f"train.max_steps={cfg.ray_steps}", "train.eval_every=0", "train.checkpoint_sub_epochs=false",
            f"train.log_every={cfg.ray_log_every}", f"train.dense_batch_size={cfg.ray_batch}",
            f"train.caption_batch_size={cfg.ray_caption_batch}", f"train.panoptic_images={cfg.ray_task_images}",
            f"train.detection_images={cfg.ray_task_images}", "cluster.rows_per_shard=16"]
    argv = ["--config", cfg.preset, "--data", str(world), "--box-masks", "--from-scratch", "--out", str(run),
            "--workers", "1", "--gpus-per-worker", str(gpus), "--overwrite"]
    argv += [x for s in sets for x in ("--set", s)]
    t0 = time.perf_counter()
    ctx.call_job(train.main, argv, "jobs.train")
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = json.loads((run / "result.json").read_text())
    steps = rows[-1]["step"] if rows else 0
    if steps != cfg.ray_steps:
        raise RuntimeError(f"the run logged {steps} steps, expected {cfg.ray_steps} (see {run / 'metrics.jsonl'})")
    if not result.get("checkpoint"):
        raise RuntimeError(f"the run reported no checkpoint ({run / 'result.json'})")
    # images/s as the trainer logs them (dense images and image-text pairs together), per logged
    # window; the first window includes the workers' and Ray Data's start-up
    steady = rows[1:] or rows
    tasks = sorted({k.split("/")[0] for r in rows for k in r if k.endswith("/total")})
    return {"preset": cfg.preset, "workers": 1, "gpus_per_worker": gpus, "steps": steps,
            "dense_batch": cfg.ray_batch, "caption_batch": cfg.ray_caption_batch, "tasks": tasks,
            "img_per_s": statistics.mean(r["images_per_s"] for r in steady),
            "img_per_s_first_window": rows[0]["images_per_s"],
            "data_wait_frac": statistics.mean(r["data_wait_frac"] for r in steady),
            "wall_s": wall, "checkpoint": result["checkpoint"]}


# --------------------------------------------------------------------------- 3. pseudo masks


def plain_teacher_loop(ctx: Context, images: list, images_root: Path, teacher_path: Path) -> dict[str, Any]:
    """The simple reference of section 3: load the teacher, then per batch read, predict, encode RLE.

    Args:
        ctx: the check's context (settings, device).
        images: ``vloss.teacher.boxes.ImageBoxes`` of the images to process.
        images_root: folder their ``file_name`` values are relative to.
        teacher_path: the teacher's state-dict file.

    Returns:
        ``{"load_s", "loop_s", "masks"}``.
    """
    import numpy as np

    from vloss.data.images import read_image
    from vloss.data.masks import encode_rle
    from vloss.teacher import TeacherConfig, build_teacher

    cfg = ctx.cfg
    t0 = time.perf_counter()
    teacher = build_teacher(TeacherConfig(arch=cfg.teacher_arch, min_size=cfg.teacher_min_size,
                                          max_size=cfg.teacher_max_size), teacher_path.read_bytes(),
                            checkpoint_name=str(teacher_path), device=ctx.device.type)
    _sync(ctx.device)
    t1 = time.perf_counter()
    masks = 0
    for start in range(0, len(images), cfg.pm_batch):
        chunk = images[start:start + cfg.pm_batch]
        arrays = [read_image(images_root / im.file_name) for im in chunk]  # [H, W, 3] uint8
        boxes = [np.array([b.xyxy for b in im.instances], dtype=np.float64).reshape(-1, 4) for im in chunk]
        for out in teacher.predict(arrays, boxes):
            for k in range(len(out.scores)):  # as the job's stage: one full-size mask at a time
                encode_rle(out.mask(k))
                masks += 1
    _sync(ctx.device)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "loop_s": t2 - t1, "masks": masks}


def section_pseudo_masks(ctx: Context) -> dict[str, Any]:
    """Section 3: the pseudo-mask job with one teacher actor (a GPU on CUDA) vs a plain loop."""
    from pipelines.pseudo_masks.job import load_detection_input
    from vloss.data.synthetic import load_world

    cfg = ctx.cfg
    paths = load_world(ctx.world())["paths"]["objects365"]
    ann, images_root = Path(paths["train_json"]), Path(paths["train_images"])
    det = load_detection_input(str(ann))
    images = [im for im in det.images if im.instances]
    boxes = sum(len(im.instances) for im in images)
    teacher_path, teacher_note = ctx.teacher()
    plain = plain_teacher_loop(ctx, images, images_root, teacher_path)
    if plain["masks"] != boxes:
        raise RuntimeError(f"the plain loop made {plain['masks']} masks for {boxes} boxes")
    n = len(images)
    found: dict[str, Any] = {
        "teacher": cfg.teacher_arch, "teacher_weights": teacher_note, "images": n, "boxes": boxes,
        "teacher_min_size": cfg.teacher_min_size, "teacher_max_size": cfg.teacher_max_size, "batch": cfg.pm_batch,
        "plain_img_per_s": n / (plain["load_s"] + plain["loop_s"]), "plain_loop_only_img_per_s": n / plain["loop_s"],
        "plain_load_s": plain["load_s"]}
    try:
        _require("ray", "ray.data")
    except SkipSection as skip:
        raise SkipSection(f"the Ray job: {skip} (the plain loop was measured)", found) from None
    from jobs import pseudo_masks

    ctx.start_ray()
    gpus = 1 if ctx.device.type == "cuda" else 0
    pm_out = ctx.work / "pseudo_masks"
    argv = ["--annotations", str(ann), "--images", str(images_root), "--out", str(pm_out),
            "--checkpoint", str(teacher_path), "--num-actors", "1", "--gpus-per-actor", str(gpus), "--overwrite",
            "--set", f"teacher.arch={cfg.teacher_arch}", "--set", f"teacher.min_size={cfg.teacher_min_size}",
            "--set", f"teacher.max_size={cfg.teacher_max_size}", "--set", f"batch_size={cfg.pm_batch}",
            "--set", f"rows_per_shard={max(1, n // 2)}"]
    t0 = time.perf_counter()
    ctx.call_job(pseudo_masks.main, argv, "jobs.pseudo_masks")
    ray_s = time.perf_counter() - t0
    counts = json.loads((pm_out / "_manifest.json").read_text())["counts"]
    if counts["images"] != n or counts["masks_written"] != boxes or counts["failed_images"]:
        raise RuntimeError(f"the job wrote {counts['masks_written']} masks for {counts['images']} images "
                           f"({counts['failed_images']} failed); expected {boxes} for {n}")
    found.update({"gpus_per_actor": gpus, "ray_img_per_s": n / ray_s, "ray_wall_s": ray_s,
                  "ratio_ray_vs_plain": (n / ray_s) / found["plain_img_per_s"]})
    return found


# --------------------------------------------------------------------------- 4. evaluation predictor


def section_eval_predictor(ctx: Context) -> dict[str, Any]:
    """Section 4: the evaluation job's predictor on the device over the ADE20K-style val images."""
    import numpy as np

    from pipelines.common.inference_decode import decode_eval_images
    from pipelines.evaluate.predictor import EvalPredictor
    from pipelines.evaluate.tasks import load_eval_set, resolve_eval_paths
    from vloss.config import resolve
    from vloss.model import VLOSS

    cfg, device = ctx.cfg, ctx.device
    eval_set = load_eval_set("ade20k_panoptic", resolve_eval_paths("ade20k_panoptic", data=ctx.world()))
    job = resolve(cfg.preset)
    size = cfg.eval_size or job.input.dense_size
    max_size = 4 * size  # the evaluation job's default
    torch.manual_seed(cfg.seed)
    weights = VLOSS(job.model).state_dict()
    threads = torch.get_num_threads()
    try:
        t0 = time.perf_counter()
        predictor = EvalPredictor(asdict(job.model), weights, "random init", eval_set.names, eval_set.category_ids,
                                  eval_set.is_thing, list(job.model.text.templates), panoptic=True,
                                  object_mask_threshold=cfg.eval_threshold,
                                  gpus=1.0 if device.type == "cuda" else 0.0, return_ids=True)
        _sync(device)
        build_s = time.perf_counter() - t0
        items = [(im.index, im.path, im.height, im.width) for im in eval_set.images]
        batches = []
        for start in range(0, len(items), cfg.eval_batch):  # the job's decode task, run here beforehand
            idx, path, h, w = zip(*items[start:start + cfg.eval_batch])
            cols = {"index": np.array(idx), "path": np.array(path, dtype=object), "height": np.array(h),
                    "width": np.array(w)}
            batches.append(decode_eval_images(cols, size=size, max_size=max_size))
        timed_images, timed_s, segments = 0, 0.0, 0
        for k, batch in enumerate(batches):
            t0 = time.perf_counter()
            out = predictor(batch)
            _sync(device)
            dt = time.perf_counter() - t0
            errors = [str(e) for e in out["error"] if e]
            if errors:
                raise RuntimeError(f"{len(errors)} image(s) failed: {errors[0]}")
            segments += sum(len(json.loads(p)) for p in out["payload"])
            if k > 0 or len(batches) == 1:  # the first batch warms up (kernels, allocator) unless it is the only one
                timed_images += len(batch["index"])
                timed_s += dt
    finally:
        torch.set_num_threads(threads)  # the actor class sets its own thread count
    return {"preset": cfg.preset, "images": len(items), "classes": len(eval_set.names), "size": size,
            "batch": cfg.eval_batch, "threshold": cfg.eval_threshold, "build_s": build_s, "timed_images": timed_images,
            "img_per_s": timed_images / timed_s, "segments": segments}


SECTION_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "train_step": section_train_step, "ray_train": section_ray_train, "pseudo_masks": section_pseudo_masks,
    "eval_predictor": section_eval_predictor}


def run_section(name: str, ctx: Context) -> dict[str, Any]:
    """Run one section, timed; exceptions become its status (``failed: ...`` or ``skipped: ...``)."""
    t0 = time.perf_counter()
    log = ctx.logs / f"{name}.log"
    try:
        with open(log, "a") as f, \
                (contextlib.nullcontext() if ctx.verbose else contextlib.redirect_stdout(f)), \
                (contextlib.nullcontext() if ctx.verbose else contextlib.redirect_stderr(f)):
            found = SECTION_FUNCTIONS[name](ctx)
        found = {"status": "ok", **found}
    except SkipSection as skip:
        found = {"status": f"skipped: {skip}", **skip.partial}
    except Exception as exc:  # reported in the table; the exit status says it failed
        missing = _missing_package(exc)
        with open(log, "a") as f:
            traceback.print_exc(file=f)
        if missing:
            found = {"status": f"skipped: {missing} not importable ({exc})"}
        else:
            found = {"status": f"failed: {type(exc).__name__}: {exc}", "log": str(log)}
    _free_memory()  # the section's models are gone with its frame: give their GPU memory back
    found["seconds"] = round(time.perf_counter() - t0, 2)
    return found


# --------------------------------------------------------------------------- report


def _g(v: Any, fmt: str = ".3g") -> str:
    return "n/a" if v is None else format(v, fmt)


def _rows(name: str, s: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) rows of one section for the table."""
    rows = [("status", f"{s['status']} ({s['seconds']:.1f} s)")]
    has = s.keys().__contains__
    if name == "train_step" and has("img_per_s"):
        rows += [("preset, input", f"{s['preset']}, {s['batch']} x {s['size']}x{s['size']}, {s['precision']}"),
                 ("images/s", _g(s["img_per_s"])), ("median step (ms)", _g(s["step_ms_median"], ".4g")),
                 ("peak memory (MiB)", f"{s['peak_memory_mib']:.0f} ({s['peak_memory_kind']})"),
                 ("FLOPs per step (fwd+bwd)", f"{s['flops_per_step']:.4g} (forward {s['flops_forward_per_step']:.4g})"),
                 ("achieved TFLOP/s", _g(s["achieved_tflops"])),
                 ("dense bf16 peak TFLOP/s", f"{_g(s['peak_bf16_tflops'])} ({s['peak_source']})"),
                 ("MFU", "n/a" if s["mfu"] is None else f"{100 * s['mfu']:.1f} %")]
        if has("profile"):
            p = s["profile"]
            rows += [("profiled step: wall / device busy (ms)",
                      f"{p['wall_ms_per_step']:.1f} / {p['device_busy_ms_per_step']:.1f} "
                      f"({100 * (p['device_busy_frac'] or 0):.0f} % busy)")]
    elif name == "ray_train" and has("img_per_s"):
        rows += [("run", f"{s['preset']}, {s['steps']} steps, {s['workers']} worker x {s['gpus_per_worker']} GPU, "
                         f"batch {s['dense_batch']} dense / {s['caption_batch']} captions"),
                 ("tasks logged", ", ".join(s["tasks"])),
                 ("images/s (after the first window)", _g(s["img_per_s"])),
                 ("images/s (first window)", _g(s["img_per_s_first_window"])),
                 ("data wait", f"{100 * s['data_wait_frac']:.0f} %"), ("job wall time (s)", f"{s['wall_s']:.1f}")]
    elif name == "pseudo_masks" and has("plain_img_per_s"):
        rows += [("teacher", f"{s['teacher']} {s['teacher_min_size']}/{s['teacher_max_size']}, "
                             f"{s['teacher_weights'].split(' (')[0]}"),
                 ("images, boxes, batch", f"{s['images']}, {s['boxes']}, {s['batch']}"),
                 ("plain loop images/s (load + loop)", _g(s["plain_img_per_s"])),
                 ("plain loop images/s (loop only)", _g(s["plain_loop_only_img_per_s"]))]
        if has("ray_img_per_s"):
            rows += [("Ray job images/s (1 actor)", _g(s["ray_img_per_s"])),
                     ("ratio Ray job / plain loop", f"{s['ratio_ray_vs_plain']:.2f}")]
    elif name == "eval_predictor" and has("img_per_s"):
        rows += [("input", f"{s['preset']}, {s['images']} images, shorter side {s['size']}, batch {s['batch']}, "
                           f"{s['classes']} classes, threshold {s['threshold']:g}"),
                 ("images/s (after the first batch)", _g(s["img_per_s"])),
                 ("build (s)", f"{s['build_s']:.1f}"), ("segments predicted", str(s["segments"]))]
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The report as one Markdown table (section, metric, value), with the device in a heading line."""
    dev = report["device"]
    lines = [f"gpu_check ({report['mode']}) on {dev['name']}, torch {report['versions']['torch']}, "
             f"{report['seconds']:.0f} s in all", "", "| section | metric | value |", "| --- | --- | --- |"]
    for name, s in report["sections"].items():
        for metric, value in _rows(name, s):
            lines.append(f"| {name} | {metric} | {value.replace('|', '/')} |")
    return "\n".join(lines)


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("torchvision", "timm", "open_clip_torch", "ray", "pycocotools"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = None
    return found


def _device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2 ** 30, 1), "count": torch.cuda.device_count(),
                "cuda": torch.version.cuda}
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    return {"type": "cpu", "name": name, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None,
                   help="output folder for gpu_check.json and logs/ (default: TMPDIR/vloss_gpu_check)")
    p.add_argument("--work", default=None,
                   help="folder for the world, the teacher file and the jobs' outputs, emptied first "
                        "(default: OUT/work; hundreds of MB with the paper preset)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny preset, small sizes, few steps, on the CPU")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                   help="auto: CUDA when present, else the CPU smoke; cpu: the full sizes on the CPU")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--preset", choices=["paper", "baseline", "tiny"], default=None)
    p.add_argument("--size", type=int, default=None, help="train-step input side (multiple of 32)")
    p.add_argument("--batch", type=int, default=None, help="images per train step")
    p.add_argument("--warmup", type=int, default=None, help="untimed train steps")
    p.add_argument("--steps", type=int, default=None, help="timed train steps")
    p.add_argument("--ray-steps", type=int, default=None, help="steps of the Ray Train run")
    p.add_argument("--pm-images", type=int, default=None, help="images of the pseudo-mask section")
    p.add_argument("--eval-images", type=int, default=None, help="images of the predictor section")
    p.add_argument("--teacher-arch", default=None,
                   choices=["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet18_fpn"])
    p.add_argument("--teacher-weights", default=None,
                   help="teacher state dict (.pth); default: a randomly initialised one saved under OUT/work")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (overrides the table)")
    p.add_argument("--profile", action="store_true",
                   help="train_step: also profile 3 steps with torch.profiler (OUT/logs/train_step_profile.txt)")
    p.add_argument("--verbose", action="store_true", help="the jobs' and Ray's output on the console, not in OUT/logs")
    return p.parse_args(argv)


def build_config(a: argparse.Namespace) -> tuple[CheckConfig, str | None]:
    """The settings from the flags, and a notice for the console (None: nothing to say)."""
    notice = None
    if a.cpu_smoke:
        cfg = smoke_config()
    elif a.device == "cpu":
        cfg = CheckConfig(device="cpu", mode="cpu")
    elif torch.cuda.is_available():
        cfg = CheckConfig()
    elif a.device == "cuda":
        raise SystemExit("bench/gpu_check.py: error: --device cuda but torch sees no CUDA device")
    else:
        cfg, notice = smoke_config(), "no CUDA device: running the CPU smoke (--cpu-smoke); not performance figures"
    for flag, key in (("preset", "preset"), ("size", "size"), ("batch", "batch"), ("warmup", "warmup"),
                      ("steps", "steps"), ("ray_steps", "ray_steps"), ("pm_images", "pm_images"),
                      ("eval_images", "eval_images"), ("teacher_arch", "teacher_arch"),
                      ("teacher_weights", "teacher_weights"), ("peak_tflops", "peak_tflops")):
        if getattr(a, flag) is not None:
            setattr(cfg, key, getattr(a, flag))
    return cfg, notice


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cfg, notice = build_config(a)
    names = [s.strip() for s in a.sections.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"bench/gpu_check.py: error: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # vloss / pipelines / jobs without an installed project
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(a.out or Path(tempfile.gettempdir()) / "vloss_gpu_check").resolve()
    ctx = Context(cfg, out, Path(a.work).resolve() if a.work else None, a.verbose)
    ctx.profile = a.profile
    shutil.rmtree(ctx.work, ignore_errors=True)  # every run starts from a fresh world and fresh job outputs
    shutil.rmtree(ctx.logs, ignore_errors=True)
    ctx.logs.mkdir(parents=True)
    if notice:
        print(f"[gpu-check] {notice}", flush=True)
    started = time.time()
    report: dict[str, Any] = {"mode": cfg.mode, "device": _device_info(ctx.device), "versions": _versions(),
                              "config": asdict(cfg), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sections": {}}
    try:
        for i, name in enumerate(names, 1):
            print(f"[gpu-check] {i}/{len(names)} {name} ...", flush=True)
            report["sections"][name] = run_section(name, ctx)
            print(f"[gpu-check] {name}: {report['sections'][name]['status']} "
                  f"({report['sections'][name]['seconds']:.1f} s)", flush=True)
            # written after every section too, so that a run stopped at its time limit keeps what it measured
            (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if ctx.ray_started:
            import ray

            ray.shutdown()
    report["prepare_s"] = ctx.prepare_s
    report["seconds"] = round(time.time() - started, 1)
    failed = [n for n, s in report["sections"].items() if s["status"].startswith("failed")]
    report["ok"] = not failed
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print()
    print(format_table(report))
    print(f"\n[gpu-check] wrote {out / 'gpu_check.json'}; logs in {ctx.logs}")
    if failed:
        print(f"[gpu-check] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
