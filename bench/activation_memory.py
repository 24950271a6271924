"""Activation checkpointing: memory kept for the backward pass and step time, on and off.

One training forward/backward of the ``paper`` network (Swin-T, 150 class embeddings) per setting,
batch 1 at ``--size`` (the paper trains at 768; 384 keeps a CPU run short). Memory is the bytes of
every tensor autograd keeps for the backward pass (``saved_tensors_hooks``), which is what
checkpointing removes and is the same on any device; on a GPU the allocator's peak is printed too.

    .venv/bin/python bench/activation_memory.py [--size 384] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vloss.config import paper  # noqa: E402
from vloss.config_io import apply_overrides  # noqa: E402
from vloss.model import VLOSS  # noqa: E402


def measure(size: int, device: str, backbone: bool, decoder: bool) -> tuple[int, float, int]:
    """(bytes kept for backward, seconds of forward + backward, GPU peak bytes or 0)."""
    cfg = apply_overrides(paper(), [f"model.backbone.grad_checkpointing={str(backbone).lower()}",
                                    f"model.decoder.grad_checkpointing={str(decoder).lower()}"]).model
    torch.manual_seed(0)
    model = VLOSS(cfg).to(device).train()
    images = torch.randn(1, 3, size, size, device=device)
    cls = torch.randn(150, cfg.text.embed_dim, device=device)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(images, class_embeds=cls)
        loss = out["pred_logits"].logsumexp(-1).mean() + out["pred_masks"].sigmoid().mean()
    loss.backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return saved[0], seconds, peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    measure(a.size, a.device, False, False)  # warm-up
    base = measure(a.size, a.device, False, False)
    print(f"paper network, batch 1 at {a.size}x{a.size} on {a.device}")
    for backbone, decoder in ((False, False), (True, False), (False, True), (True, True)):
        kept, seconds, peak = base if not (backbone or decoder) else measure(a.size, a.device, backbone, decoder)
        print(f"backbone={backbone!s:5} decoder={decoder!s:5}: kept {kept / 2**20:7.1f} MiB "
              f"(ratio {kept / base[0]:.3f}), step {seconds:6.2f} s (ratio {seconds / base[1]:.2f})"
              + (f", GPU peak {peak / 2**30:.2f} GiB" if peak else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
