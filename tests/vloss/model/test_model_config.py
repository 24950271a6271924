"""Config dataclasses, presets, type-checked overrides and the dict round trip."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from vloss.config import LossConfig, VLOSSConfig, baseline, paper, preset, tiny
from vloss.config_io import apply_overrides, from_dict, to_dict


def test_paper_preset_matches_sec_4_2() -> None:
    cfg = paper()
    m = cfg.model
    assert m.backbone.name == "swin_tiny_patch4_window7_224"
    assert m.encoder.kind == "fpn_style"
    assert (m.decoder.num_layers, m.decoder.num_queries, m.decoder.global_query) == (9, 100, True)
    assert (m.text.width, m.text.layers, m.text.heads, m.text.context_length) == (512, 12, 8, 48)
    assert m.decoder.hidden_dim == 256
    assert isinstance(cfg.loss, LossConfig) and cfg.loss.cls_weight == 2.0


def test_baseline_is_mask2former_clip() -> None:
    m = baseline().model
    assert m.encoder.kind == "deform" and m.decoder.global_query is False


def test_overrides_are_typed_and_accept_short_and_full_paths() -> None:
    cfg = apply_overrides(paper(), [
        "decoder.num_layers=6", "model.encoder.kind=fpn", "backbone.depths=1,1,2,1",
        "text.weights=none", "loss.cls_weight=3", "seed=7", "decoder.global_query=false",
        "text.templates=a photo of a {}.,a {}",
    ])
    assert cfg.model.decoder.num_layers == 6
    assert cfg.model.encoder.kind == "fpn"
    assert cfg.model.backbone.depths == (1, 1, 2, 1)
    assert cfg.model.text.weights is None
    assert cfg.loss.cls_weight == 3.0 and isinstance(cfg.loss.cls_weight, float)
    assert cfg.seed == 7
    assert cfg.model.decoder.global_query is False
    assert cfg.model.text.templates == ("a photo of a {}.", "a {}")


@pytest.mark.parametrize("override, words", [
    ("decoder.nope=1", ["unknown key", "decoder.nope"]),
    ("nosection.x=1", ["unknown key"]),
    ("decoder.num_layers=1.5", ["expected an int", "decoder.num_layers"]),
    ("decoder.num_layers=abc", ["decoder.num_layers"]),
    ("decoder.global_query=maybe", ["expected a bool"]),
    ("encoder.kind=transformer", ["encoder.kind must be one of"]),
    ("decoder=3", ["is a section"]),
    ("decoder.num_layers", ["key=value"]),
])
def test_bad_overrides_fail_clearly(override: str, words: list[str]) -> None:
    cfg = paper()
    before = to_dict(cfg)
    with pytest.raises(ValueError) as info:
        apply_overrides(cfg, [override])
    for word in words:
        assert word in str(info.value)
    assert to_dict(cfg) == before  # a rejected override leaves the config untouched


@pytest.mark.parametrize("make", [paper, baseline, tiny])
def test_dict_round_trip_is_json_and_lossless(make) -> None:
    cfg = apply_overrides(make(), ["backbone.weights=/some/file.pth", "seed=3"])
    data = json.loads(json.dumps(to_dict(cfg)))
    back = from_dict(data, VLOSSConfig)
    assert isinstance(back, VLOSSConfig)
    assert back == cfg
    assert isinstance(back.model.text.templates, tuple)


def test_from_dict_rejects_unknown_and_mistyped_keys() -> None:
    data = to_dict(tiny())
    data["model"]["decoder"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        from_dict(data, VLOSSConfig)
    data = to_dict(tiny())
    data["model"]["decoder"]["num_queries"] = "many"
    with pytest.raises(ValueError, match="num_queries"):
        from_dict(data, VLOSSConfig)


def test_unknown_preset() -> None:
    assert preset("tiny") == tiny()
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


@dataclass
class _Extra:
    betas: tuple[float, int] = (0.9, 3)
    limit: int | None = None


@dataclass
class _Extended(VLOSSConfig):
    extra: _Extra = field(default_factory=_Extra)


def test_extended_config_fixed_tuples_and_optional_unions() -> None:
    cfg = apply_overrides(_Extended(), ["extra.betas=0.5,7", "extra.limit=4", "decoder.num_layers=2"])
    assert cfg.extra.betas == (0.5, 7) and cfg.extra.limit == 4 and cfg.model.decoder.num_layers == 2
    assert from_dict(to_dict(cfg), _Extended) == cfg
    with pytest.raises(ValueError, match="expected 2"):
        apply_overrides(cfg, ["extra.betas=0.5"])
    with pytest.raises(ValueError, match="expected an int"):
        apply_overrides(cfg, ["extra.betas=0.5,0.7"])
    assert apply_overrides(cfg, ["extra.limit=none"]).extra.limit is None
