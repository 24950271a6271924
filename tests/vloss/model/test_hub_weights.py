"""Tower weights by name from the Hugging Face cache, offline (issue #26 item 2).

The cache is built in the hub's on-disk layout (``models--ORG--NAME/refs/main`` naming a snapshot
folder that holds the files) with small randomly initialised timm and open_clip models, saved as
the libraries publish them (``model.safetensors``, ``open_clip_model.safetensors``); the reference
is the same model in memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from tests.vloss.model.conftest import tiny_cfg
from tests.vloss.model.test_model_backbone import small_swin_cfg, timm_classifier
from tests.vloss.model.test_model_text import clip77
from vloss.model import VLOSS, Backbone
from vloss.model.hub import WeightsNotCachedError, hub_weights, resolve_weights

SWIN_REPO = "timm/swin_tiny_patch4_window7_224.ms_in1k"
CLIP_REPO = "timm/vit_base_patch32_clip_224.openai"  # what open_clip's table names for ViT-B-32/openai


def _cache_file(home: Path, repo: str, filename: str, state: dict[str, torch.Tensor]) -> Path:
    """Put ``state`` into the hub cache under ``home`` as ``repo``'s ``filename`` (hub layout)."""
    org, name = repo.split("/")
    root = home / "hub" / f"models--{org}--{name}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / filename))
    return snap / filename


@pytest.fixture()
def hf_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


@pytest.mark.parametrize("name", [f"hf-hub:{SWIN_REPO}", "swin_tiny_patch4_window7_224.ms_in1k"])
def test_backbone_by_timm_name_loads_from_the_cache(hf_home, name) -> None:
    full = timm_classifier()
    path = _cache_file(hf_home, SWIN_REPO, "model.safetensors", full.state_dict())
    assert resolve_weights(name, "backbone") == str(path)
    bb = Backbone(small_swin_cfg(weights=name)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = full.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(bb(x), ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_text_tower_by_open_clip_name_loads_from_the_cache(hf_home) -> None:
    assert hub_weights("ViT-B-32/openai", "text").repo_id == CLIP_REPO
    ref = clip77()
    _cache_file(hf_home, CLIP_REPO, "open_clip_model.safetensors", ref.state_dict())
    cfg = tiny_cfg("text.weights=ViT-B-32/openai", "text.width=64", "text.layers=2", "text.heads=2",
                   "text.embed_dim=64")
    model = VLOSS(cfg.model).eval()
    captions = ["a photo of a cat.", "sky"]
    with torch.no_grad():
        expected = ref.encode_text(open_clip.tokenize(captions, context_length=77))
        torch.testing.assert_close(model.encode_captions(captions), expected, atol=1e-5, rtol=1e-5)


def test_a_name_missing_from_the_cache_is_one_line_naming_the_fill_command(hf_home) -> None:
    with pytest.raises(WeightsNotCachedError) as info:
        resolve_weights("hf-hub:timm/not-cached-here", "backbone")
    msg = str(info.value)
    assert "\n" not in msg and str(hf_home / "hub") in msg
    assert "hf download timm/not-cached-here model.safetensors" in msg and "model.backbone.allow_download=true" in msg
    with pytest.raises(WeightsNotCachedError, match="model.text.allow_download"):
        resolve_weights("ViT-B-32/openai", "text")


def test_paths_are_not_names(tmp_path) -> None:
    f = tmp_path / "swin.pth"
    f.write_bytes(b"x")
    assert hub_weights(str(f), "backbone") is None and resolve_weights(str(f), "backbone") == str(f)
    assert hub_weights("s3://bucket/swin.pth", "backbone") is None
    assert hub_weights("no_such_model_anywhere", "backbone") is None  # left to the file check's error


def test_the_plan_records_the_resolved_file_and_a_dry_run_refuses_what_is_not_cached(hf_home, capsys) -> None:
    from jobs.train import main as train_main

    argv = ["--config", "paper", "--dry-run", "--sizes", "paper", "--workers", "8",
            "--set", f"model.backbone.weights=hf-hub:{SWIN_REPO}", "--set", "model.text.weights=ViT-B-32/openai"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert f"hf download {SWIN_REPO} model.safetensors" in err and f"hf download {CLIP_REPO}" in err
    swin = _cache_file(hf_home, SWIN_REPO, "model.safetensors", {"w": torch.ones(3)})
    clip = _cache_file(hf_home, CLIP_REPO, "open_clip_model.safetensors", {"w": torch.zeros(2)})
    assert train_main(argv) == 0  # the dry run checks the files exist and records them; it loads nothing
    out = capsys.readouterr().out
    sha = hashlib.sha256(swin.read_bytes()).hexdigest()[:16]
    assert f"model.backbone.weights = hf-hub:{SWIN_REPO} -> {swin} (sha256 {sha}" in out
    assert f"model.text.weights = ViT-B-32/openai -> {clip}" in out
