"""Box-conditioned MMDetection Mask R-CNN: a mask for each GIVEN box, through mmdet's own model API.

Most labs' Mask R-CNN teachers are MMDetection model-zoo checkpoints (R50/R101/X-101 FPN, caffe-style
backbones, Swin-T), which torchvision cannot load. This backend builds the network from an mmdet
config (a name from mmdet's packaged configs, or the user's file) and loads the model-zoo file
(``{meta, state_dict, ...}``) with ``weights_only=True``. For a batch of images and their given boxes:

1. mmdet's own test pipeline (``LoadImageFromNDArray`` -> ``Resize`` -> ``PackDetInputs``) and the
   model's ``data_preprocessor`` (BGR->RGB, normalise, pad) make the batch, as ``inference_detector``
   does; the given boxes are scaled by each image's ``scale_factor``;
2. ``model.extract_feat`` runs backbone and neck once per image;
3. the box head (``roi_head._bbox_forward``) scores each given box; the mask channel is the best
   foreground class and the **mask score is that class's softmax probability** (box regression
   is ignored: the box is given), as the torchvision backend does;
4. the mask head (``roi_head._mask_forward``) gives 28x28 logits; the chosen channel's sigmoid is
   pasted at the original resolution with mmdet's own ``_do_paste_mask`` one box at a time over
   the box's own extent (what mmdet itself does on CPU), thresholded at ``mask_threshold`` with
   ``>=`` as mmdet does, and restricted to the box's pixel extent.

Memory per image is its input tensors plus the box crops, never boxes x height x width.
``TeacherOutput.labels`` holds mmdet's class index + 1 (0 means none, as for torchvision, whose
index 0 is the background).
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vloss.teacher.output import TeacherOutput, box_pixel_bounds

INSTALL_HINT = "the mmdet backend needs MMDetection and mmcv with its compiled ops: run `make install-mmdet`"


class MissingBackendError(ValueError):
    """An optional backend is not installed; the message says how to install it."""


class MMDetCheckpointError(ValueError):
    """An mmdet checkpoint cannot be used; the message names the file and what is wrong."""


def require_mmdet() -> None:
    """Import mmdet and mmcv's compiled ops, or raise :class:`MissingBackendError` naming ``make install-mmdet``."""
    try:
        import mmcv.ops  # noqa: F401  (RoIAlign and NMS: missing in mmcv-lite)
        import mmdet  # noqa: F401
        import mmengine  # noqa: F401
    except Exception as exc:  # ImportError, or mmcv built without its ops
        raise MissingBackendError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None


def packaged_configs() -> Path:
    """The folder of config files shipped inside the installed mmdet package."""
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs"


def resolve_config(name_or_file: str, trust_code: bool = False) -> Any:
    """An ``mmengine.Config`` from a packaged config name or a user file.

    Args:
        name_or_file: ``mask-rcnn_r50_fpn_1x_coco`` (searched in mmdet's packaged configs, ``.py``
            optional), or a path to the user's config: ``.json``/``.yaml`` (read as data, so they
            must be complete, as ``cfg.dump()`` writes them) or ``.py`` (only with ``trust_code``).
        trust_code: allow a user ``.py`` config, which mmengine executes to read it.

    Raises:
        FileNotFoundError: no packaged config of that name and no such file.
        ValueError: a ``.py`` file without ``trust_code``, or an unreadable file.
    """
    require_mmdet()
    from mmengine.config import Config

    path = Path(name_or_file).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".py":
            if not trust_code:
                raise ValueError(f"{path}: a Python config is run to be read; pass --set teacher.trust_config=true "
                                 f"if you trust it, or write it as YAML/JSON (mmengine: cfg.dump('teacher.yaml'))")
            return Config.fromfile(str(path))
        if suffix in (".json", ".yaml", ".yml"):
            try:
                if suffix == ".json":
                    data = json.loads(path.read_text())
                else:
                    data = _safe_yaml(path.read_text())
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"{path}: not a readable config ({exc})") from None
            if not isinstance(data, dict) or "model" not in data:
                raise ValueError(f"{path}: a config needs a 'model' section")
            if "_base_" in data:
                raise ValueError(f"{path}: '_base_' is not followed in a data config; write the complete config "
                                 f"(mmengine: Config.fromfile(...).dump('teacher.yaml'))")
            return Config(data)
        raise ValueError(f"{path}: an mmdet config must be .py, .json or .yaml")
    stem = name_or_file[:-3] if name_or_file.endswith(".py") else name_or_file
    root = packaged_configs()
    found = sorted(root.rglob(f"{Path(stem).name}.py"))
    if "/" in stem:
        found = [p for p in found if str(p).endswith(stem + ".py")]
    if not found:
        import difflib

        names = sorted({p.stem for p in root.rglob("*.py")})
        close = difflib.get_close_matches(Path(stem).name, names, n=3)
        raise FileNotFoundError(f"{name_or_file}: neither a file nor one of mmdet's packaged configs"
                                + (f"; did you mean {', '.join(close)}?" if close else ""))
    return Config.fromfile(str(found[0]))  # mmdet's own package code


def _safe_yaml(text: str) -> Any:
    """YAML as data: the safe loader plus ``!!python/tuple`` (which mmengine's ``cfg.dump`` writes for
    tuples), built from its items; every other Python tag is refused.

    Raises:
        ValueError: not YAML, or a tag that would construct a Python object.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("tag:yaml.org,2002:python/tuple",
                           lambda loader, node: tuple(loader.construct_sequence(node)))
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def build_mmdet_model(cfg: Any) -> torch.nn.Module:
    """The detector of ``cfg.model``, built by mmdet's registry (random weights; none downloaded).

    Raises:
        ValueError: the config is not a two-stage detector with a standard RoI head and a mask head.
    """
    from mmdet.models.roi_heads import StandardRoIHead
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    head = getattr(model, "roi_head", None)
    if not isinstance(head, StandardRoIHead) or type(head) is not StandardRoIHead or not head.with_mask:
        raise ValueError(f"the mmdet teacher must be a Mask R-CNN with a standard RoI head and a mask head; "
                         f"this config builds {type(model).__name__} with {type(head).__name__}")
    model.cfg = cfg
    return model.eval()


def _allowed_globals() -> list:
    """What a real model-zoo file holds beyond tensors and plain containers: NumPy arrays and scalars
    (seeds, ``meta``) and mmengine's ``HistoryBuffer`` (the ``message_hub`` of files saved by mmengine's
    Runner), whose statistics table pickles as ``getattr(buffer, "min")``. ``getattr`` only fetches an
    attribute of an object already built from this list; what it returns is never called, since the
    weights-only unpickler calls allow-listed functions only."""
    from mmengine.logging.history_buffer import HistoryBuffer

    reconstruct = np._core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar
    allowed: list = [HistoryBuffer, getattr, np.ndarray, np.dtype, reconstruct, scalar,
                     (reconstruct, "numpy.core.multiarray._reconstruct"), (scalar, "numpy.core.multiarray.scalar")]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType", "Int8DType",
                 "UInt8DType", "BoolDType"):
        allowed.append(getattr(np.dtypes, name))
    return allowed


def load_mmdet_checkpoint(model: torch.nn.Module, data: bytes, name: str) -> dict[str, Any]:
    """Load a model-zoo file (``{meta, state_dict, ...}`` or a bare state dict) into ``model``.

    Args:
        model: the detector :func:`build_mmdet_model` built.
        data: the file's bytes.
        name: the file's name, for messages.

    Returns:
        the file's ``meta`` (``{}`` when it has none).

    Raises:
        MMDetCheckpointError: not a weights-only loadable file (a file that would run code among
            them), or parameters missing, unexpected or of another shape.
    """
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        import re

        text = str(exc)
        named = re.search(r"(?:GLOBAL|global) ([\w.]+)", text)
        first = f"it holds {named.group(1)}" if named else (text.strip().splitlines() or [type(exc).__name__])[0]
        raise MMDetCheckpointError(f"{name}: not loadable with weights_only=True ({first}); a file that would run "
                                   f"code is never loaded") from None
    if not isinstance(obj, dict):
        raise MMDetCheckpointError(f"{name}: expected a checkpoint dict, got {type(obj).__name__}")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MMDetCheckpointError(f"{name}: 'state_dict' is not a mapping of tensors")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise MMDetCheckpointError(f"{name}: does not fit the config's model: {len(missing)} parameters missing "
                                   f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}), "
                                   f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}"
                                   f"{' ...' if len(unexpected) > 3 else ''}); is it the checkpoint of this config?")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise MMDetCheckpointError(f"{name}: parameter {k} has shape {tuple(v.shape)}, the config's model "
                                       f"{tuple(own[k].shape)} (another number of classes?)")
    model.load_state_dict(state, strict=True)
    meta = obj.get("meta", {})
    return meta if isinstance(meta, dict) else {}


class BoxConditionedMMDet:
    """Predict one mask per given box with an mmdet Mask R-CNN (see the module docstring).

    Args:
        model: the detector (:func:`build_mmdet_model`, weights loaded), with ``model.cfg`` set.
        mask_threshold: probability at or above which a pixel is in the mask (mmdet's
            ``mask_thr_binary``; 0.5 in every model-zoo config).
        device: torch device to run on.
    """

    def __init__(self, model: torch.nn.Module, *, mask_threshold: float = 0.5,
                 device: str | torch.device = "cpu") -> None:
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg

        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.mask_threshold = float(mask_threshold)
        steps = [dict(s) for s in get_test_pipeline_cfg(model.cfg.copy())
                 if "LoadAnnotations" not in str(s.get("type", ""))]
        steps[0]["type"] = "mmdet.LoadImageFromNDArray"  # as mmdet.apis.inference_detector does for arrays
        self.pipeline = Compose(steps)

    @torch.no_grad()
    def _heads(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[list[dict], Any, list[dict]]:
        """Features, and the box and mask heads on the given boxes (scaled to the network's input).

        Returns:
            (per image ``{"boxes" [N_i, 4] scaled, "labels" [N_i] 0-based, "scores" [N_i],
            "mask_preds" [N_i, C or 1, 28, 28] logits}``, the features, the images' metainfo).
        """
        from mmdet.structures.bbox import bbox2roi

        m = self.model
        packed = [self.pipeline({"img": np.ascontiguousarray(im[..., ::-1]), "img_id": i})  # RGB -> BGR, as read
                  for i, im in enumerate(images)]
        batch = m.data_preprocessor({"inputs": [p["inputs"] for p in packed],
                                     "data_samples": [p["data_samples"] for p in packed]}, False)
        metas = [s.metainfo for s in batch["data_samples"]]
        feats = m.extract_feat(batch["inputs"])
        scaled = [torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4), device=self.device)
                  * torch.tensor(meta["scale_factor"], dtype=torch.float32, device=self.device).repeat(2)
                  for b, meta in zip(boxes, metas)]
        rois = bbox2roi(scaled)
        cls_score = m.roi_head._bbox_forward(feats, rois)["cls_score"]      # [sum N, C + 1], background last
        probs = torch.softmax(cls_score, dim=-1)[:, :-1]
        scores, labels = probs.max(dim=-1)
        mask_preds = m.roi_head._mask_forward(feats, rois)["mask_preds"]    # [sum N, C or 1, 28, 28]
        counts = [len(b) for b in scaled]
        results = [{"boxes": b, "labels": lab, "scores": sc, "mask_preds": mp}
                   for b, lab, sc, mp in zip(scaled, labels.split(counts), scores.split(counts),
                                             mask_preds.split(counts))]
        return results, feats, metas

    @torch.no_grad()
    def predict(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[TeacherOutput]:
        """Binary masks for the given boxes, pasted box by box (memory bounded by the box areas).

        Args:
            images: per image ``[H, W, 3]`` uint8 RGB.
            boxes: per image ``[N_i, 4]`` float ``xyxy`` boxes in original pixels.
        Returns:
            one ``TeacherOutput`` per image, boxes in the given order.
        """
        from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"expected an [H, W, 3] uint8 image, got {im.shape} {im.dtype}")
        outs: list[TeacherOutput | None] = [None] * len(images)
        keep = [i for i, b in enumerate(boxes) if len(b) > 0]
        for i, image in enumerate(images):
            if i not in keep:
                outs[i] = TeacherOutput.empty(*image.shape[:2])
        if not keep:
            return outs  # type: ignore[return-value]
        results, _, metas = self._heads([images[i] for i in keep], [boxes[i] for i in keep])
        agnostic = self.model.roi_head.mask_head.class_agnostic
        for i, res, meta in zip(keep, results, metas):
            h, w = images[i].shape[:2]
            # back to original pixels exactly as mmdet's mask head does (``bboxes /= scale_factor``)
            pasted = res["boxes"] / res["boxes"].new_tensor(meta["scale_factor"]).repeat((1, 2))
            given = np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4)
            crops, bounds = [], []
            for k in range(len(given)):
                channel = 0 if agnostic else int(res["labels"][k])
                probs = res["mask_preds"][k, channel].sigmoid()[None, None]
                region, (ys, xs) = _do_paste_mask(probs, pasted[k:k + 1], h, w, skip_empty=True)
                binary = (region[0] >= self.mask_threshold).cpu().numpy()
                y0, x0 = int(ys.start), int(xs.start)
                r0, r1, c0, c1 = box_pixel_bounds(given[k], h, w)
                crop = np.zeros((r1 - r0, c1 - c0), dtype=bool)
                ya, yb = max(y0, r0), min(y0 + binary.shape[0], r1)
                xa, xb = max(x0, c0), min(x0 + binary.shape[1], c1)
                if yb > ya and xb > xa:
                    crop[ya - r0:yb - r0, xa - c0:xb - c0] = binary[ya - y0:yb - y0, xa - x0:xb - x0]
                crops.append(crop)
                bounds.append((r0, r1, c0, c1))
            outs[i] = TeacherOutput(crops, np.array(bounds, dtype=np.int64).reshape(-1, 4),
                                    res["scores"].float().cpu().numpy(), res["labels"].long().cpu().numpy() + 1, h, w)
        return outs  # type: ignore[return-value]

    @torch.no_grad()
    def reference_masks(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        """mmdet's own full-image mask prediction with the given boxes as its detections
        (``roi_head.predict_mask``, ``rescale=True``): per image ``[N_i, H, W]`` bool, for tests."""
        from mmengine.structures import InstanceData

        results, feats, metas = self._heads(images, boxes)
        dets = [InstanceData(bboxes=r["boxes"].clone(), labels=r["labels"], scores=r["scores"]) for r in results]
        head = self.model.roi_head
        saved = head.test_cfg.mask_thr_binary
        head.test_cfg.mask_thr_binary = self.mask_threshold
        try:
            out = head.predict_mask(feats, metas, dets, rescale=True)
        finally:
            head.test_cfg.mask_thr_binary = saved
        return [o.masks.cpu().numpy().astype(bool) for o in out]


def build_mmdet_teacher(config_name: str, checkpoint: bytes, checkpoint_name: str, *, mask_threshold: float = 0.5,
                        device: str = "cpu", trust_config: bool = False) -> BoxConditionedMMDet:
    """The mmdet teacher: config resolved, network built, model-zoo checkpoint loaded (weights only)."""
    require_mmdet()
    cfg = resolve_config(config_name, trust_code=trust_config)
    model = build_mmdet_model(cfg)
    load_mmdet_checkpoint(model, checkpoint, checkpoint_name or "checkpoint")
    return BoxConditionedMMDet(model, mask_threshold=mask_threshold, device=device)


def config_identity(config_name: str) -> str:
    """What identifies the config in a plan fingerprint: the user file's sha256, or the packaged name."""
    path = Path(config_name).expanduser()
    if path.is_file():
        import hashlib

        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return "mmdet:" + os.path.basename(config_name)
