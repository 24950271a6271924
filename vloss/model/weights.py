"""Loading and saving weights from local files (``torch.load(..., weights_only=True)``).

* :func:`load_backbone_weights` — a timm ImageNet checkpoint (classification model state dict,
  remapped by timm itself) or a backbone state dict saved from this package.
* :func:`load_text_weights` — a full open_clip CLIP state dict (its 77-row positional embedding
  is cut to the configured context length; ``visual.*`` is ignored) or a text-only one.
* :func:`load_model_weights` / :func:`save_model_weights` — the whole network.

Every load checks names and shapes first and fails with :class:`WeightsError` naming the file,
the parameter, the expected and the found shape. Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from vloss.model.backbone import create_timm_features
from vloss.safe_load import safe_torch_load

_WRAPPER_KEYS = ("model", "state_dict", "module")
_CLIP_IGNORED = ("logit_scale", "logit_bias", "attn_mask")


class WeightsError(ValueError):
    """A weights file does not fit the model (names the file, parameter and shapes)."""


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":  # tensors only, never code (open_clip's and timm's hub format)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    obj = safe_torch_load(path)  # weights_only=True; a refusal becomes an error naming the file
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict (mapping), found {type(obj).__name__}")
    return dict(obj)


def _unwrap(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            return dict(obj[key])
    return obj


def _strip(sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path, what: str) -> None:
    """Strictly load ``state_dict`` into ``module`` after checking every name and shape.

    Args:
        module: target module.
        state_dict: tensors by parameter/buffer name (relative to ``module``).
        path: the file they came from (for the error message).
        what: a short description of the target (e.g. "text encoder").

    Raises:
        WeightsError: on shape mismatches, missing or unexpected names.
    """
    expected = module.state_dict()
    problems = []
    for name, tensor in state_dict.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            problems.append(f"parameter {name!r}: expected shape {tuple(expected[name].shape)}, "
                            f"found {tuple(tensor.shape)}")
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        problems.append(f"missing {len(missing)} parameter(s), e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} parameter(s), e.g. {unexpected[:5]}")
    if problems:
        raise WeightsError(f"{path}: weights do not fit the {what}:\n  " + "\n  ".join(problems))
    module.load_state_dict(state_dict, strict=True)


def _text_encoder(model: nn.Module) -> nn.Module:
    return model.text if hasattr(model, "text") else model


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load ImageNet (or previously saved) backbone weights into ``model.backbone``.

    Args:
        model: a :class:`~vloss.model.network.VLOSS` or a :class:`~vloss.model.backbone.Backbone`.
        path: a timm checkpoint of the classification model (e.g. ``swin_tiny_patch4_window7_224``'s
            ``pytorch_model.bin``), a state dict of the backbone saved from this package
            (optionally prefixed ``backbone.body.`` / ``body.``) or a full VLOSS checkpoint
            (its backbone part is taken).
    """
    backbone = model.backbone if hasattr(model, "backbone") else model
    body = backbone.body
    sd = _unwrap(_read(path))
    if any(k.startswith("backbone.body.") for k in sd):  # a full VLOSS checkpoint: take its backbone
        sd = {k: v for k, v in sd.items() if k.startswith("backbone.body.")}
    sd = _strip(sd, ("backbone.body.", "body."))
    if set(sd) == set(body.state_dict()):  # saved from this package: same names
        load_checked(body, sd, path, f"backbone {backbone.cfg.name!r}")
        return
    # a timm classification checkpoint: let timm remap it (its own filter fn) into a fresh extractor
    try:
        fresh = create_timm_features(backbone.cfg, path)
    except ValueError as exc:
        raise WeightsError(str(exc)) from exc
    load_checked(body, fresh.state_dict(), path, f"backbone {backbone.cfg.name!r}")


def clip_text_state_dict(sd: Mapping[str, torch.Tensor], context_length: int,
                         path: str | Path) -> dict[str, torch.Tensor]:
    """Turn an open_clip CLIP (or text-only) state dict into one for our text tower.

    Drops ``visual.*`` and CLIP's logit scale/bias, strips ``text.`` style prefixes and cuts the
    positional embedding to the first ``context_length`` rows.

    Args:
        sd: the loaded tensors.
        context_length: our tower's context length (48).
        path: source file, for error messages.
    """
    out = {k: v for k, v in sd.items() if not k.startswith("visual.") and k not in _CLIP_IGNORED}
    out = _strip(out, ("text.tower.", "tower.", "text."))
    pos = out.get("positional_embedding")
    if pos is None:
        raise WeightsError(f"{path}: no 'positional_embedding' found; not a CLIP text state dict")
    if pos.shape[0] < context_length:
        raise WeightsError(f"{path}: parameter 'positional_embedding' has {pos.shape[0]} rows, "
                           f"fewer than the context length {context_length}")
    out["positional_embedding"] = pos[:context_length].clone()
    return out


def load_text_weights(model: nn.Module, path: str | Path) -> None:
    """Load CLIP text-tower weights (e.g. OpenAI ViT-B/32 via open_clip) from a local file.

    Args:
        model: a :class:`~vloss.model.network.VLOSS` or a :class:`~vloss.model.text_encoder.TextEncoder`.
        path: a full open_clip CLIP state dict (77-token positions are cut to the context length)
            or a text-tower state dict.
    """
    text = _text_encoder(model)
    sd = clip_text_state_dict(_unwrap(_read(path)), text.context_length, path)
    load_checked(text.tower, sd, path, "text encoder")
    text.clear_cache()


def save_model_weights(model: nn.Module, path: str | Path, config: Optional[dict[str, Any]] = None) -> None:
    """Save ``{"model": state_dict, "config": config}`` (config: :func:`vloss.config.to_dict` output)."""
    payload: dict[str, Any] = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if config is not None:
        payload["config"] = config
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_model_weights(model: nn.Module, path: str | Path) -> Optional[dict[str, Any]]:
    """Load a full-network checkpoint written by :func:`save_model_weights` (or a bare state dict).

    Returns:
        the config dict stored with the weights, if any.
    """
    obj = _read(path)
    sd = _unwrap(obj)
    load_checked(model, sd, path, "VLOSS model")
    if hasattr(model, "text"):
        model.text.clear_cache()
    cfg = obj.get("config") if "model" in obj else None
    return cfg if isinstance(cfg, dict) else None
