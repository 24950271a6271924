"""Full-model weights round trip, clear shape errors, and the summary command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.vloss.model.conftest import tiny_cfg
from vloss.config import VLOSSConfig
from vloss.config_io import from_dict, to_dict
from vloss.model import VLOSS, WeightsError, load_backbone_weights, load_model_weights, save_model_weights
from vloss.model.__main__ import main


def test_full_model_round_trip(tmp_path: Path) -> None:
    cfg = tiny_cfg("encoder.kind=deform")
    src = VLOSS(cfg.model).eval()
    with torch.no_grad():  # make every parameter differ from a fresh init
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ckpt" / "model.pt"
    save_model_weights(src, path, config=to_dict(cfg))
    saved_cfg = from_dict(torch.load(path, map_location="cpu", weights_only=True)["config"], VLOSSConfig)
    dst = VLOSS(saved_cfg.model).eval()
    returned = load_model_weights(dst, path)
    assert from_dict(returned, VLOSSConfig) == cfg
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cls_src = src.text.class_embeddings(["cat", "dog"])
        cls_dst = dst.text.class_embeddings(["cat", "dog"])
        torch.testing.assert_close(cls_src, cls_dst, atol=0, rtol=0)
        a, b = src(x, cls_src), dst(x, cls_dst)
    for key in ("pred_logits", "pred_embeds", "pred_masks", "img_embed"):
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(src.logit_scale_img_text(), dst.logit_scale_img_text())


def test_loading_into_a_different_architecture_fails_clearly(tmp_path: Path) -> None:
    src = VLOSS(tiny_cfg().model)
    path = tmp_path / "model.pt"
    save_model_weights(src, path)
    dst = VLOSS(tiny_cfg("decoder.num_queries=7").model)
    with pytest.raises(WeightsError) as info:
        load_model_weights(dst, path)
    msg = str(info.value)
    assert str(path) in msg and "'decoder.query_feat.weight'" in msg and "(7, 64)" in msg and "(20, 64)" in msg
    other = VLOSS(tiny_cfg("decoder.num_layers=2").model)
    with pytest.raises(WeightsError, match="unexpected"):
        load_model_weights(other, path)


def test_summary_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", "tiny", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    model = VLOSS(tiny_cfg().model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["text"] == sum(p.numel() for p in model.text.parameters())
    parts = sum(counts[k] for k in ("backbone", "encoder", "decoder", "text", "other"))
    assert parts == counts["total"]
    assert 1e6 < counts["total"] < 10e6  # "a few million parameters"


@pytest.mark.parametrize("name, reported", [("paper", 156.69e6), ("baseline", 110.97e6)])
def test_summary_paper_and_baseline_within_10_percent(name: str, reported: float,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", name, "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert abs(total - reported) / reported < 0.10, total


def test_summary_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", "tiny", "--set", "decoder.num_layers=2"]) == 0
    text = capsys.readouterr().out
    for part in ("backbone", "encoder", "decoder", "text", "other", "total"):
        assert part in text


def test_backbone_from_a_full_checkpoint(tmp_path: Path) -> None:
    src = VLOSS(tiny_cfg().model)
    path = tmp_path / "model.pt"
    save_model_weights(src, path)
    dst = VLOSS(tiny_cfg().model)
    load_backbone_weights(dst, path)
    for (name, a), b in zip(src.backbone.state_dict().items(), dst.backbone.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(src.decoder.query_feat.weight, dst.decoder.query_feat.weight)  # only the backbone
