"""Export a VLOSS network with a fixed vocabulary to ONNX or TorchScript.

The exported graph is the image path only: backbone -> encoder -> masked-attention decoder ->
open-vocabulary classifier, with the vocabulary's class embeddings baked in as a constant
(no text tower at run time, no auxiliary outputs)::

    images       [B, 3, H, W]     float32, RGB, ImageNet-normalised, zero-padded bottom/right
    pred_logits  [B, Q, C+1]      class logits (last column = no-object)
    pred_masks   [B, Q, H/4, W/4] mask logits

The batch axis is dynamic; ``H`` and ``W`` are fixed at export (the Swin window masks and the
decoder's attention-map sizes are computed from them while tracing). Each export writes its
metadata beside the file as ``FILE.json`` (see :func:`metadata_path`): class names, thing
flags, the input contract (size, size divisor, normalisation) and the output layout. The ONNX
file also carries it under the model metadata key ``"vloss"`` (when the ``onnx`` package is
installed) and the TorchScript file as the extra file ``vloss.json``.

On the consumer side :mod:`vloss.inference.postprocess_numpy` prepares inputs and turns the outputs into
panoptic / instance / semantic results without torch.

Typical use::

    from vloss.inference.export import export_onnx

    names = ["person", "dog", "grass"]
    embeds = model.class_embeddings(names)                       # [C, Dt]
    meta = export_onnx(model, embeds, "vloss.onnx", 512, 672, names=names, is_thing=[True, True, False])

Exporting uses PyTorch's TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``):
the tracer handles timm's Swin window attention, the boolean masks of the masked-attention
decoder and the ``grid_sample`` of the deformable encoder without changes to the model
(opset >= 16 for ``GridSample``), in about 2 s for the ``tiny`` preset. torch 2.14 marks that
exporter and ``torch.jit`` deprecated (the warnings are left visible). The dynamo exporter
(``dynamo=True, dynamic_shapes={"images": {0: torch.export.Dim("batch")}}``, needs ``onnxscript``)
exports :class:`ExportedSegmenter` too, with the same numerics, but takes 15-20x longer.

The decoder's masked attention thresholds ``sigmoid(mask logit)`` at ``mask_threshold``: an
input with a value within rounding of it can give visibly different outputs in any two runtimes
(PyTorch at batch 1 vs batch 3 included); compare exports on inputs away from that edge.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import nn

from vloss.data.transforms import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample (deformable encoder)
INPUT_NAMES = ("images",)
OUTPUT_NAMES = ("pred_logits", "pred_masks")
MASK_STRIDE = 4
METADATA_KEY = "vloss"
_TRACE_BATCH = 2  # trace with B > 1 so that nothing specialises on a batch of one


class ExportedSegmenter(nn.Module):
    """A VLOSS network's image path with one vocabulary baked in.

    The backbone, encoder, decoder and classifier are the given model's own modules (shared,
    not copied); the text tower is left out. The class embeddings become the float32 buffer
    ``class_embeds``.

    Args:
        model: a :class:`vloss.model.VLOSS`.
        class_embeds: ``[C, Dt]`` class embeddings of the vocabulary, e.g. from
            ``model.class_embeddings(names)``.
    """

    def __init__(self, model: nn.Module, class_embeds: torch.Tensor) -> None:
        super().__init__()
        text_dim = model.cfg.text.embed_dim
        if class_embeds.dim() != 2 or class_embeds.shape[1] != text_dim or class_embeds.shape[0] < 1:
            raise ValueError(f"class_embeds must be [C >= 1, {text_dim}], got {tuple(class_embeds.shape)}")
        self.backbone = model.backbone
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.classifier = model.classifier
        device = next(model.backbone.parameters()).device
        self.register_buffer("class_embeds", class_embeds.detach().to(device=device, dtype=torch.float32).clone())
        self.size_divisor = int(model.size_divisor)
        self.num_queries = int(model.cfg.decoder.num_queries)

    @property
    def num_classes(self) -> int:
        """Vocabulary size C (``pred_logits`` has C + 1 columns)."""
        return int(self.class_embeds.shape[0])

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment a batch.

        Args:
            images: ``[B, 3, H, W]`` float ImageNet-normalised images, H and W multiples of
                :attr:`size_divisor`.

        Returns:
            ``(pred_logits [B, Q, C+1], pred_masks [B, Q, H/4, W/4])``, the final decoder
            layer's predictions, as ``VLOSS.forward(images, class_embeds)`` returns them.
        """
        feats = self.backbone(images)  # 4 x [B, C_i, H/s_i, W/s_i]
        mask_features, multi_scale = self.encoder(feats)  # [B, M, H/4, W/4], [f'0, f'1, f'2]
        last = self.decoder(multi_scale, mask_features)[-1]
        logits = self.classifier(last["pred_embeds"], self.class_embeds.to(last["pred_embeds"].dtype))
        return logits, last["pred_masks"]  # [B, Q, C+1], [B, Q, H/4, W/4]


def metadata_path(path: str | Path) -> Path:
    """The metadata file written beside an exported file: ``FILE.json`` (``model.onnx`` -> ``model.onnx.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_onnx(model: nn.Module, class_embeds: torch.Tensor, path: str | Path, height: int, width: int, *,
                names: Optional[Sequence[str]] = None, is_thing: Optional[Sequence[bool]] = None,
                opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export to ONNX with a dynamic batch axis and write ``FILE.json`` beside it.

    Args:
        model: a :class:`vloss.model.VLOSS` (its train/eval mode is restored afterwards).
        class_embeds: ``[C, Dt]`` class embeddings of the vocabulary.
        path: the ``.onnx`` file to write (parent folders are created).
        height: input height H, a multiple of ``model.size_divisor``.
        width: input width W, a multiple of ``model.size_divisor``.
        names: optional ``C`` class names, recorded in the metadata.
        is_thing: optional ``C`` thing flags, recorded in the metadata (panoptic post-processing).
        opset: ONNX opset (>= 16 for the deformable encoder's ``GridSample``).

    Returns:
        the metadata dict (also written to :func:`metadata_path` and, with the ``onnx`` package
        installed, stored in the model's ``metadata_props`` under ``"vloss"``).

    Raises:
        ValueError: bad size, opset, or names / flags that do not match the vocabulary.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: GridSample needs opset >= {MIN_OPSET}")
    path = Path(path)
    segmenter = ExportedSegmenter(model, class_embeds)
    meta = build_metadata(segmenter, "onnx", path, height, width, names, is_thing, model)
    meta["opset"] = int(opset)
    example = _example_input(segmenter, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}
    with _eval_mode(model), _quiet_tracing(), torch.no_grad():
        segmenter.eval()
        torch.onnx.export(segmenter, (example,), str(path), dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic, opset_version=int(opset),
                          do_constant_folding=True)
    _embed_onnx_metadata(path, meta)
    _write_metadata(path, meta)
    return meta


def export_torchscript(model: nn.Module, class_embeds: torch.Tensor, path: str | Path, height: int, width: int, *,
                       names: Optional[Sequence[str]] = None,
                       is_thing: Optional[Sequence[bool]] = None) -> dict[str, Any]:
    """Export to TorchScript (``torch.jit.trace``) and write ``FILE.json`` beside it.

    The traced module takes ``images [B, 3, H, W]`` for any B and returns the tuple
    ``(pred_logits, pred_masks)``; load it with ``torch.jit.load(path)``. H and W must be the
    exported ones (the trace does not check them).

    Args:
        model: a :class:`vloss.model.VLOSS` (its train/eval mode is restored afterwards).
        class_embeds: ``[C, Dt]`` class embeddings of the vocabulary.
        path: the ``.pt`` file to write (parent folders are created).
        height: input height H, a multiple of ``model.size_divisor``.
        width: input width W, a multiple of ``model.size_divisor``.
        names: optional ``C`` class names, recorded in the metadata.
        is_thing: optional ``C`` thing flags, recorded in the metadata.

    Returns:
        the metadata dict (also written to :func:`metadata_path` and stored in the archive as
        the extra file ``vloss.json``).
    """
    path = Path(path)
    segmenter = ExportedSegmenter(model, class_embeds)
    meta = build_metadata(segmenter, "torchscript", path, height, width, names, is_thing, model)
    example = _example_input(segmenter, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(model), _quiet_tracing(), torch.no_grad():
        segmenter.eval()
        traced = torch.jit.trace(segmenter, (example,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})
    _write_metadata(path, meta)
    return meta


def build_metadata(segmenter: ExportedSegmenter, fmt: str, path: str | Path, height: int, width: int,
                   names: Optional[Sequence[str]] = None, is_thing: Optional[Sequence[bool]] = None,
                   model: Optional[nn.Module] = None) -> dict[str, Any]:
    """The metadata of one export: what a consumer needs to feed the file and read its outputs.

    Args:
        segmenter: the module being exported.
        fmt: ``"onnx"`` or ``"torchscript"``.
        path: the exported file (its name is recorded).
        height: input height H.
        width: input width W.
        names: optional ``C`` class names.
        is_thing: optional ``C`` thing flags.
        model: the source VLOSS, for the encoder / backbone names.

    Returns:
        a JSON-serialisable dict.

    Raises:
        ValueError: H or W not a positive multiple of the size divisor; names / flags of the wrong length.
    """
    div = segmenter.size_divisor
    for side, value in (("height", height), ("width", width)):
        if int(value) <= 0 or int(value) % div:
            raise ValueError(f"{side} {value} must be a positive multiple of the size divisor {div}")
    c, q = segmenter.num_classes, segmenter.num_queries
    if names is not None and len(names) != c:
        raise ValueError(f"{len(names)} names for a vocabulary of {c} class embeddings")
    if is_thing is not None and len(is_thing) != c:
        raise ValueError(f"{len(is_thing)} is_thing flags for a vocabulary of {c} class embeddings")
    import vloss

    h, w = int(height), int(width)
    cfg = getattr(model, "cfg", None)
    return {
        "format": fmt,
        "file": Path(path).name,
        "vloss_version": vloss.__version__,
        "torch_version": torch.__version__,
        "backbone": cfg.backbone.name if cfg is not None else None,
        "encoder_kind": cfg.encoder.kind if cfg is not None else None,
        "height": h,
        "width": w,
        "size_divisor": div,
        "mask_stride": MASK_STRIDE,
        "num_queries": q,
        "num_classes": c,
        "no_object_index": c,
        "class_names": [str(n) for n in names] if names is not None else None,
        "is_thing": [bool(t) for t in is_thing] if is_thing is not None else None,
        "normalization": {
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "pixel_scale": 255.0,
            "channel_order": "RGB",
            "layout": "NCHW",
            "formula": "(uint8 / pixel_scale - mean) / std, per channel",
            "padding": "uint8 zeros at the bottom/right of each resized image, before normalisation",
        },
        "inputs": [{"name": INPUT_NAMES[0], "shape": ["batch", 3, h, w], "dtype": "float32"}],
        "outputs": [
            {"name": OUTPUT_NAMES[0], "shape": ["batch", q, c + 1], "dtype": "float32",
             "meaning": "class logits; last column = no-object"},
            {"name": OUTPUT_NAMES[1], "shape": ["batch", q, h // MASK_STRIDE, w // MASK_STRIDE],
             "dtype": "float32", "meaning": "mask logits over the padded input"},
        ],
        "dynamic_axes": {name: [0] for name in INPUT_NAMES + OUTPUT_NAMES},
    }


# --------------------------------------------------------------------------- helpers


def _example_input(segmenter: ExportedSegmenter, height: int, width: int) -> torch.Tensor:
    """A seeded random ``[2, 3, H, W]`` float32 input on the model's device (only shapes matter to the trace)."""
    device = segmenter.class_embeds.device
    gen = torch.Generator().manual_seed(0)
    return torch.randn(_TRACE_BATCH, 3, int(height), int(width), generator=gen).to(device)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the tracer's warnings about Python values taken as constants: the input size and the
    shapes derived from it are fixed on purpose (deprecation notices of the exporters stay visible)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _embed_onnx_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store the metadata JSON in the ONNX model's ``metadata_props`` (skipped without the ``onnx`` package)."""
    try:
        import onnx
    except ImportError:
        return
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(proto, str(path))


def _write_metadata(path: Path, meta: dict[str, Any]) -> None:
    target = metadata_path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(target)


__all__ = [
    "ExportedSegmenter",
    "build_metadata",
    "export_onnx",
    "export_torchscript",
    "metadata_path",
]
