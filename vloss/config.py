"""Top-level configuration: typed dataclasses, presets and ``--set key=value`` overrides.

Every component has its own dataclass; :class:`VLOSSConfig` nests them. Presets are plain
functions (:func:`paper`, :func:`baseline`, :func:`tiny`) that return a fully resolved
config. :func:`apply_overrides` edits a config from ``"section.field=value"`` strings and
checks each value against the field's annotated type; :func:`to_dict` / :func:`from_dict`
turn a config into JSON-serialisable data (saved in every checkpoint) and back.

Adding a section (``data``, ``train``, ...) only needs a new dataclass and one field on
:class:`VLOSSConfig` with ``field(default_factory=...)``: the override, serialisation and
type-checking machinery works on any nesting of dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from vloss.losses.config import LossConfig

ENCODER_KINDS = ("fpn_style", "fpn", "deform")


@dataclass
class BackboneConfig:
    """Image feature extractor f_I (a timm model used with ``features_only``).

    Args:
        name: timm model name, e.g. ``swin_tiny_patch4_window7_224`` or ``resnet50``.
        out_indices: which feature stages to return; the default, the last four, gives
            strides 4/8/16/32 for Swin, ResNets and ConvNeXts.
        embed_dim: Swin only: override the patch-embedding width (builds a smaller Swin).
        depths: Swin only: override the number of blocks per stage.
        num_heads: Swin only: override the attention heads per stage.
        drop_path_rate: stochastic depth rate (Mask2Former's Swin-T uses 0.3).
        weights: optional local file with ImageNet weights (a timm checkpoint); loaded at build.
    """

    name: str = "swin_tiny_patch4_window7_224"
    out_indices: tuple[int, ...] = (-4, -3, -2, -1)
    embed_dim: Optional[int] = None
    depths: Optional[tuple[int, ...]] = None
    num_heads: Optional[tuple[int, ...]] = None
    drop_path_rate: float = 0.3
    weights: Optional[str] = None


@dataclass
class EncoderConfig:
    """Multi-scale pixel encoder f_E (paper Sec. 3.3, Table 5).

    Args:
        kind: ``fpn_style`` (VLOSS: transformer on f0 + FPN), ``fpn`` (convs only) or
            ``deform`` (Mask2Former's multi-scale deformable attention encoder).
        hidden_dim: channel width of the refined maps f'0..f'2 (and of the FPN convs).
        mask_dim: channel width of the mask features f'3 (stride 4).
        num_layers: transformer layers (fpn_style: on f0; deform: deformable layers).
        num_heads: attention heads of those layers.
        ffn_dim: feed-forward width of those layers.
        transformer_dim: fpn_style only: width of the transformer over f0; ``None`` keeps the
            backbone's own width (768 for Swin-T), as in the paper's parameter count.
        num_points: deform only: sampling points per head and level.
        dropout: dropout inside the transformer layers.
    """

    kind: str = "fpn_style"
    hidden_dim: int = 256
    mask_dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 3072
    transformer_dim: Optional[int] = None
    num_points: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder.kind must be one of {ENCODER_KINDS}, got {self.kind!r}")


@dataclass
class DecoderConfig:
    """Masked-attention transformer decoder f_D (Mask2Former, plus the global image query).

    Args:
        hidden_dim: query width D.
        num_queries: N learnable object queries.
        num_layers: decoder layers (round-robin over f'0..f'2).
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        global_query: add the global image query (Eq. 2); ``False`` gives the baseline.
        mask_threshold: a pixel is attended when sigmoid(mask logit) >= this.
        dropout: dropout inside attention and feed-forward layers.
    """

    hidden_dim: int = 256
    num_queries: int = 100
    num_layers: int = 9
    num_heads: int = 8
    ffn_dim: int = 2048
    global_query: bool = True
    mask_threshold: float = 0.5
    dropout: float = 0.0


@dataclass
class TextConfig:
    """CLIP text tower f_T (open_clip ``TextTransformer``).

    Args:
        context_length: tokens per text (paper: cut from 77 to 48).
        vocab_size: BPE vocabulary size (open_clip's bundled tokenizer: 49408).
        width: transformer width.
        layers: transformer layers.
        heads: attention heads.
        embed_dim: output (joint embedding) width Dt.
        quick_gelu: use QuickGELU as OpenAI's CLIP weights do.
        templates: prompt templates for class embeddings; ``{}`` is the class name.
        weights: optional local CLIP (or text-only) state-dict file; loaded at build.
        trainable: whether the text tower receives gradients.
    """

    context_length: int = 48
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    embed_dim: int = 512
    quick_gelu: bool = True
    templates: tuple[str, ...] = ("a photo of a {}.",)
    weights: Optional[str] = None
    trainable: bool = True


@dataclass
class ModelConfig:
    """The whole network.

    Args:
        backbone: image feature extractor settings.
        encoder: multi-scale encoder settings.
        decoder: decoder settings.
        text: text encoder settings.
        logit_scale_init: initial value of the (learned, CLIP-style) logit scales (1/0.07).
        logit_scale_max: clamp of the logit scales (CLIP: 100).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    logit_scale_init: float = 1.0 / 0.07
    logit_scale_max: float = 100.0


@dataclass
class VLOSSConfig:
    """Everything a run needs; saved (resolved) in every checkpoint.

    Args:
        model: network settings.
        loss: loss weights and sampling (owned by ``vloss.losses``).
        seed: global random seed.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    seed: int = 0


# --------------------------------------------------------------------------- presets


def paper() -> VLOSSConfig:
    """VLOSS as in Sec. 4.2: Swin-T, FPN-style encoder, 9 layers, 100 + 1 queries, CLIP ViT-B text."""
    return VLOSSConfig()


def baseline() -> VLOSSConfig:
    """Mask2Former + CLIP text encoder: deformable encoder, no global query (Table 3, row 1)."""
    cfg = VLOSSConfig()
    cfg.model.encoder = EncoderConfig(kind="deform", num_layers=6, num_heads=8, ffn_dim=1024)
    cfg.model.decoder.global_query = False
    return cfg


def tiny() -> VLOSSConfig:
    """A few-million-parameter model for tests and demos on CPU (no weights needed)."""
    cfg = VLOSSConfig()
    cfg.model.backbone = BackboneConfig(
        name="swin_tiny_patch4_window7_224", embed_dim=32, depths=(1, 1, 1, 1),
        num_heads=(1, 2, 4, 8), drop_path_rate=0.0,
    )
    cfg.model.encoder = EncoderConfig(
        kind="fpn_style", hidden_dim=64, mask_dim=64, num_layers=1, num_heads=4,
        ffn_dim=256, transformer_dim=64,
    )
    cfg.model.decoder = DecoderConfig(hidden_dim=64, num_queries=20, num_layers=3, num_heads=4, ffn_dim=256)
    cfg.model.text = TextConfig(width=64, layers=2, heads=2, embed_dim=64)
    cfg.loss.num_points = 1024
    return cfg


PRESETS: dict[str, Callable[[], VLOSSConfig]] = {"paper": paper, "baseline": baseline, "tiny": tiny}


def preset(name: str) -> VLOSSConfig:
    """Return the preset config called ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


# --------------------------------------------------------------------------- typing helpers


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert already-parsed ``value`` (JSON-like) to type ``tp``; raise ValueError if it does not fit."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: None is not allowed (type {tp})")
    tp = inner
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return _from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a sequence, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected a bool, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise ValueError(f"{where}: unsupported field type {tp}")


def _parse_text(text: str, tp: Any, where: str) -> Any:
    """Parse the right-hand side of ``key=value`` for a field of type ``tp``."""
    optional, inner = _is_optional(tp)
    stripped = text.strip()
    if optional and stripped.lower() in ("none", "null"):
        return None
    if inner is str:
        return stripped
    if inner is bool:
        low = stripped.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{where}: expected a bool (true/false), got {text!r}")
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        body = stripped.strip("()[]")
        items = [s.strip() for s in body.split(",") if s.strip()] if body else []
        if len(args) == 2 and args[1] is Ellipsis:
            types_ = [args[0]] * len(items)
        elif len(args) != len(items):
            raise ValueError(f"{where}: expected {len(args)} comma-separated items, got {len(items)}")
        else:
            types_ = list(args)
        return tuple(_parse_text(s, t, f"{where}[{i}]") for i, (s, t) in enumerate(zip(items, types_)))
    try:
        parsed = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: cannot parse {text!r} as {inner}") from exc
    if inner is float and isinstance(parsed, int) and not isinstance(parsed, bool):
        parsed = float(parsed)
    return _convert(parsed, tp, where)


# --------------------------------------------------------------------------- public helpers


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dataclass -> JSON-serialisable dict (tuples become lists)."""
    data = dataclasses.asdict(cfg)
    return json.loads(json.dumps(data))


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict[str, Any], cls: type = VLOSSConfig) -> Any:
    """Rebuild a config of type ``cls`` from :func:`to_dict` output (missing keys keep defaults)."""
    return _from_dict(cls, data, "")


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``"a.b.c=value"`` overrides in place and return ``cfg``.

    Keys are dotted field paths from ``cfg``. On a :class:`VLOSSConfig`, a path that does not
    start with a top-level section is looked up under ``model`` too, so ``decoder.num_layers=6``
    and ``model.decoder.num_layers=6`` are the same override.

    Args:
        cfg: a (nested) dataclass config.
        overrides: strings ``key=value``; values are parsed per the field's type
            (ints, floats, ``true/false``, ``none`` for optional fields, ``1,2,3`` for tuples).

    Raises:
        ValueError: naming the override for unknown keys or values of the wrong type.
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        path = key.strip().split(".")
        top = {f.name for f in dataclasses.fields(cfg)}
        if path[0] not in top and isinstance(cfg, VLOSSConfig):
            path = ["model", *path]
        target = cfg
        for i, name in enumerate(path[:-1]):
            fields_ = {f.name for f in dataclasses.fields(target)}
            if name not in fields_:
                raise ValueError(f"override {item!r}: unknown key {'.'.join(path[: i + 1])!r}; "
                                 f"known here: {sorted(fields_)}")
            target = getattr(target, name)
            if not dataclasses.is_dataclass(target):
                raise ValueError(f"override {item!r}: {'.'.join(path[: i + 1])!r} is not a section")
        last = path[-1]
        fields_ = {f.name for f in dataclasses.fields(target)}
        if last not in fields_:
            raise ValueError(f"override {item!r}: unknown key {'.'.join(path)!r}; known here: {sorted(fields_)}")
        tp = _hints(type(target))[last]
        if dataclasses.is_dataclass(_is_optional(tp)[1]):
            raise ValueError(f"override {item!r}: {'.'.join(path)!r} is a section; set its fields")
        value = _parse_text(text, tp, f"override {item!r}")
        try:
            dataclasses.replace(target, **{last: value})  # runs __post_init__ checks first
        except ValueError as exc:
            raise ValueError(f"override {item!r}: {exc}") from exc
        setattr(target, last, value)
    return cfg


def config_json(cfg: Any) -> str:
    """Pretty JSON of a resolved config (for reports and logs)."""
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)

