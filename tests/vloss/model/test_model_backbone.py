"""Backbone: feature contract, NHWC->NCHW, equality with timm's own intermediates, weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from vloss.config import BackboneConfig
from vloss.model import Backbone, WeightsError, load_backbone_weights

SMALL_SWIN = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))


def small_swin_cfg(**kw) -> BackboneConfig:
    return BackboneConfig(drop_path_rate=0.0, **SMALL_SWIN, **kw)


def timm_classifier(**kw) -> torch.nn.Module:
    """The timm classification model a published checkpoint comes from (same architecture)."""
    return timm.create_model("swin_tiny_patch4_window7_224", strict_img_size=False, always_partition=True,
                             **SMALL_SWIN, **kw).eval()


def test_swin_tiny_feature_contract() -> None:
    with torch.device("meta"):
        bb = Backbone(BackboneConfig())
    assert bb.channels() == [96, 192, 384, 768]
    assert bb.reduction() == [4, 8, 16, 32]
    assert list(bb.feature_info.channels()) == [96, 192, 384, 768]


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_outputs_are_nchw_and_equal_timm_intermediates(size: tuple[int, int]) -> None:
    ref_model = timm_classifier()
    bb = Backbone(small_swin_cfg()).eval()
    bb.body.load_state_dict({k: v for k, v in zip(bb.body.state_dict(), _feature_order(ref_model, bb))})
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = bb(x)
        ref = ref_model.forward_intermediates(x, intermediates_only=True)  # NCHW per stage
    for a, b, c, s in zip(ours, ref, bb.channels(), bb.reduction()):
        assert a.shape == (2, c, size[0] // s, size[1] // s)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _feature_order(full: torch.nn.Module, bb: Backbone) -> list[torch.Tensor]:
    """Tensors of the classifier in the feature extractor's order (names differ: layers.0 vs layers_0)."""
    full_sd = full.state_dict()
    out = []
    for name in bb.body.state_dict():
        head, _, rest = name.partition(".")
        cand = head.replace("layers_", "layers.") + "." + rest
        out.append(full_sd[cand] if cand in full_sd else full_sd[name])
    return out


def test_real_timm_checkpoint_loads_through_user_path(tmp_path: Path) -> None:
    full = timm_classifier()  # random init, saved exactly as timm publishes classification weights
    path = tmp_path / "swin_imagenet.pth"
    torch.save(full.state_dict(), path)
    bb = Backbone(small_swin_cfg()).eval()
    load_backbone_weights(bb, path)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = full.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(bb(x), ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # and at construction time, via cfg.backbone.weights
    bb2 = Backbone(small_swin_cfg(weights=str(path))).eval()
    with torch.no_grad():
        for a, b in zip(bb2(x), ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_saved_backbone_round_trip_and_wrong_shapes(tmp_path: Path) -> None:
    src = Backbone(small_swin_cfg()).eval()
    path = tmp_path / "backbone.pth"
    torch.save(src.body.state_dict(), path)
    dst = Backbone(small_swin_cfg()).eval()
    load_backbone_weights(dst, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x)):
            assert torch.equal(a, b)
    bigger = Backbone(BackboneConfig(drop_path_rate=0.0, embed_dim=64, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8)))
    bad = tmp_path / "bigger.pth"
    torch.save(bigger.body.state_dict(), bad)
    with pytest.raises(WeightsError) as info:
        load_backbone_weights(dst, bad)
    msg = str(info.value)
    assert str(bad) in msg and "patch_embed.proj.weight" in msg and "(32, 3, 4, 4)" in msg and "(64, 3, 4, 4)" in msg


def test_resnet_alternative_backbone() -> None:
    bb = Backbone(BackboneConfig(name="resnet18", drop_path_rate=0.0)).eval()
    assert bb.channels() == [64, 128, 256, 512]
    assert bb.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        feats = bb(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]


def test_size_not_divisible_by_32_is_rejected() -> None:
    bb = Backbone(small_swin_cfg())
    with pytest.raises(ValueError, match="divisible by 32"):
        bb(torch.randn(1, 3, 64, 80))


def test_swin_overrides_rejected_for_other_backbones() -> None:
    with pytest.raises(ValueError, match="Swin only"):
        Backbone(BackboneConfig(name="resnet18", embed_dim=32))


def test_out_indices_with_wrong_strides_are_rejected() -> None:
    with pytest.raises(ValueError, match="strides"):
        Backbone(BackboneConfig(name="resnet18", out_indices=(0, 1, 2, 3), drop_path_rate=0.0))


def test_drop_path_rate_is_passed_even_when_zero() -> None:
    blocks = lambda bb: [m for m in bb.modules() if type(m).__name__ == "DropPath"]  # noqa: E731
    assert blocks(Backbone(small_swin_cfg())) == []  # 0.0: timm's default (0.1) must not sneak in
    assert blocks(Backbone(BackboneConfig(drop_path_rate=0.2, **SMALL_SWIN)))
