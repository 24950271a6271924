"""The pretrained towers are written in the formats real weights come in and load through the user's path."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from open_clip.model import CLIPTextCfg, _build_text_tower

from vloss.config import preset
from vloss.model import WeightsError, build_model
from vloss.pretrain.towers import CLIP_CONTEXT, ClipTowers, classifier_kwargs, write_towers


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    torch.manual_seed(0)
    cfg = preset("tiny").model
    towers = ClipTowers(cfg.backbone, cfg.text).eval()
    return towers, write_towers(towers, tmp_path_factory.mktemp("towers"), {"steps": 0})


def test_backbone_file_is_a_timm_classification_checkpoint(written):
    towers, paths = written
    cfg = preset("tiny").model.backbone
    sd = torch.load(paths["backbone"], weights_only=True)
    assert "head.fc.weight" in sd and sd["head.fc.weight"].shape == (preset("tiny").model.text.embed_dim, 256)
    fresh = timm.create_model(cfg.name, pretrained=False, **classifier_kwargs(cfg, sd["head.fc.weight"].shape[0]))
    fresh.load_state_dict(sd, strict=True)  # timm's own model takes it as it is
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(x), towers.image(x), atol=1e-5)


def test_text_file_is_an_open_clip_text_state_dict(written):
    towers, paths = written
    cfg = preset("tiny").model.text
    sd = torch.load(paths["text"], weights_only=True)
    assert sd["positional_embedding"].shape[0] == CLIP_CONTEXT == 77
    assert "logit_scale" in sd and not any(k.startswith("visual.") for k in sd)
    tower = _build_text_tower(cfg.embed_dim, CLIPTextCfg(context_length=77, vocab_size=cfg.vocab_size,
                                                          width=cfg.width, heads=cfg.heads, layers=cfg.layers),
                              quick_gelu=cfg.quick_gelu)
    tower.load_state_dict({k: v for k, v in sd.items() if k != "logit_scale"}, strict=True)


def test_vloss_loads_both_through_the_weights_settings(written):
    towers, paths = written
    cfg = preset("tiny").model
    cfg.backbone.weights, cfg.text.weights = paths["backbone"], paths["text"]
    model = build_model(cfg).eval()
    src = towers.image.state_dict()
    body = model.backbone.body.state_dict()
    assert len(body) > 20
    for key, value in body.items():  # the feature extractor names stage i "layers_i"
        assert torch.equal(value, src[re.sub(r"layers_(\d)", r"layers.\1", key)]), key
    assert torch.equal(model.text.tower.positional_embedding, towers.text.tower.positional_embedding[:48])
    caption = ["a cyan star next to a red ring on snow."]
    with torch.no_grad():
        assert torch.allclose(model.text.encode_text(caption), towers.text.encode_text(caption), atol=1e-5)


def test_towers_of_another_size_are_refused_with_the_parameter_and_shapes(written):
    _, paths = written
    cfg = preset("tiny").model
    cfg.text.width, cfg.text.heads = 128, 2
    cfg.text.weights = paths["text"]
    wrong = r"token_embedding.weight.*expected shape \(49408, 128\), found \(49408, 64\)"
    with pytest.raises(WeightsError, match=wrong):
        build_model(cfg)
    cfg = preset("tiny").model
    cfg.backbone.embed_dim = 48
    cfg.backbone.weights = paths["backbone"]
    with pytest.raises((WeightsError, ValueError), match="backbone"):
        build_model(cfg)
