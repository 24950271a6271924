"""Text encoder: bundled tokenizer, 77-token CLIP checkpoints, class-embedding cache, token features."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from tests.vloss.model.conftest import tiny_cfg
from vloss.config import TextConfig
from vloss.model import VLOSS, TextEncoder, WeightsError, load_text_weights

SMALL = dict(width=64, heads=2, layers=2)


def small_text(**kw) -> TextEncoder:
    return TextEncoder(TextConfig(embed_dim=64, **SMALL, **kw)).eval()


def clip77(width: int = 64) -> CLIP:
    """A randomly initialised open_clip CLIP model with the standard 77-token text context."""
    torch.manual_seed(1)
    text_cfg = CLIPTextCfg(context_length=77, vocab_size=49408, width=width, heads=2, layers=2)
    vision_cfg = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32)
    model = CLIP(embed_dim=64, vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=True).eval()
    with torch.no_grad():  # CLIP zero-initialises nothing important, but make the test sharper
        model.positional_embedding.normal_(std=0.1)
    return model


def test_tokenizer_vocab_ships_with_open_clip() -> None:
    bpe = Path(open_clip.tokenizer.default_bpe())
    assert bpe.is_file() and Path(open_clip.__file__).parent in bpe.parents
    text = small_text()
    ids = text.tokenize(["a photo of a cat."])
    assert ids.shape == (1, 48)
    assert ids[0, 0].item() == 49406  # <start_of_text>
    assert (ids[0] == 49407).sum().item() == 1  # one <end_of_text>
    long = text.tokenize([" ".join(["dog"] * 100)])
    assert long.shape == (1, 48) and long[0, -1].item() == 49407  # truncated, still ends with EOT


def test_clip77_checkpoint_gives_same_embeddings_in_48_context(tmp_path: Path) -> None:
    ref = clip77()
    path = tmp_path / "clip_vit_b.pt"
    torch.save(ref.state_dict(), path)
    text = small_text()
    load_text_weights(text, path)
    assert text.tower.positional_embedding.shape == (48, 64)
    assert text.tower.attn_mask.shape == (48, 48)
    captions = ["a photo of a cat.", "two dogs playing in the snow", "sky"]
    with torch.no_grad():
        expected = ref.encode_text(open_clip.tokenize(captions, context_length=77))
        got = text.encode_text(captions)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the same file through the model config path
    cfg = tiny_cfg(f"text.weights={path}", "text.width=64", "text.layers=2", "text.heads=2", "text.embed_dim=64")
    model = VLOSS(cfg.model).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_captions(captions), expected, atol=1e-5, rtol=1e-5)


def test_wrong_text_checkpoints_fail_clearly(tmp_path: Path) -> None:
    wide = tmp_path / "wide.pt"
    torch.save(clip77(width=128).state_dict(), wide)
    with pytest.raises(WeightsError) as info:
        load_text_weights(small_text(), wide)
    msg = str(info.value)
    assert str(wide) in msg and "'token_embedding.weight'" in msg and "(49408, 64)" in msg and "(49408, 128)" in msg
    short = tmp_path / "short.pt"
    sd = small_text(context_length=32).tower.state_dict()
    torch.save(sd, short)
    with pytest.raises(WeightsError, match="fewer than the context length 48"):
        load_text_weights(small_text(), short)
    with pytest.raises(FileNotFoundError):
        load_text_weights(small_text(), tmp_path / "missing.pt")


def test_template_ensemble_formula() -> None:
    text = small_text()
    templates = ["a {}", "a photo of a {}."]
    got = text.class_embeddings(["cat", "traffic light"], templates)
    with torch.no_grad():
        rows = []
        for name in ["cat", "traffic light"]:
            e = F.normalize(text.encode_text([t.format(name) for t in templates]), dim=-1).mean(0)
            rows.append(F.normalize(e, dim=-1))
    torch.testing.assert_close(got, torch.stack(rows), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(2))


def test_cache_hits_and_invalidation() -> None:
    text = small_text()
    a = text.class_embeddings(["cat", "dog"])
    assert not a.requires_grad
    assert text.class_embeddings(["cat", "dog"]) is a  # same vocabulary: cached
    b = text.class_embeddings(["cat", "dog"], ["a {}"])
    assert b is not a and not torch.allclose(a, b)  # templates are part of the key
    with torch.no_grad():  # an optimizer step changes the weights in place
        text.tower.text_projection.add_(torch.randn_like(text.tower.text_projection))
    c = text.class_embeddings(["cat", "dog"])
    assert c is not a and not torch.allclose(a, c)


def test_training_mode_recomputes_with_grad() -> None:
    text = small_text().train()
    a = text.class_embeddings(["cat", "dog"])
    b = text.class_embeddings(["cat", "dog"])
    assert a.requires_grad and b.requires_grad and a is not b
    a.sum().backward()
    assert text.tower.token_embedding.weight.grad is not None
    frozen = small_text(trainable=False).train()
    x = frozen.class_embeddings(["cat"])
    assert not x.requires_grad and frozen.class_embeddings(["cat"]) is x


def test_token_features_and_mask() -> None:
    text = small_text()
    captions = ["a cat", "a photo of two dogs on a red sofa"]
    with torch.no_grad():
        tokens, mask = text.encode_text_tokens(captions)
        pooled = text.encode_text(captions)
    assert tokens.shape == (2, 48, 64) and mask.shape == (2, 48) and mask.dtype == torch.bool
    ids = text.tokenize(captions)
    assert mask.sum(1).tolist() == [(row != 0).sum().item() for row in ids]
    assert mask.sum(1).tolist()[0] == 4  # <sot> a cat <eot>
    eot = ids.argmax(-1)  # EOT has the largest id
    torch.testing.assert_close(tokens[torch.arange(2), eot], pooled)


def test_bad_calls() -> None:
    text = small_text()
    with pytest.raises(TypeError):
        text.tokenize("a single string")
    with pytest.raises(ValueError):
        text.class_embeddings([])


def test_trimmed_padding_equals_full_context() -> None:
    text = small_text()
    captions = ["a cat", "a photo of two dogs on a red sofa", "sky"]
    ids = text.tokenize(captions)
    assert text.trim(ids).shape[1] == (ids[1] != 0).sum().item()  # longest text's length
    with torch.no_grad():
        torch.testing.assert_close(text.encode_ids(ids, trim=True), text.encode_ids(ids, trim=False),
                                   atol=1e-5, rtol=1e-5)
        full = text._project(text._token_features(ids))
        tokens, mask = text.encode_text_tokens(captions)
    torch.testing.assert_close(tokens[mask], full[mask], atol=1e-5, rtol=1e-5)
    assert not tokens[~mask].any()


def test_class_names_are_cleaned_before_prompting_and_the_rule_is_a_switch() -> None:
    """"sky-other-merged" is prompted as "sky" (and "fire_engine" as "fire engine"), by the one
    class_embeddings every caller uses; names.enabled=false prompts the raw names."""
    torch.manual_seed(0)
    model = VLOSS(tiny_cfg().model).eval()
    raw = ["sky-other-merged", "fire_engine", "Monitor/TV"]
    clean = model.class_embeddings(raw)
    assert torch.allclose(clean, model.class_embeddings(["sky", "fire engine", "monitor"]))
    torch.manual_seed(0)
    off = VLOSS(tiny_cfg("model.text.names.enabled=false").model).eval()
    assert torch.allclose(off.class_embeddings(["sky", "fire engine", "monitor"]), clean)  # same weights
    assert not torch.allclose(off.class_embeddings(raw), clean)


def test_the_one_template_setting_is_the_default_everywhere() -> None:
    torch.manual_seed(0)
    model = VLOSS(tiny_cfg("model.text.templates=a {} in the scene.,itap of a {}.").model).eval()
    assert torch.allclose(model.class_embeddings(["dog"]),
                          model.class_embeddings(["dog"], ("a {} in the scene.", "itap of a {}.")))
    assert not torch.allclose(model.class_embeddings(["dog"]), model.class_embeddings(["dog"], ("a photo of a {}.",)))
