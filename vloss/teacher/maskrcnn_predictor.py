"""Box-conditioned Mask R-CNN: a mask for each GIVEN box, not for detections.

For a batch of images and their given boxes:

1. ``model.transform`` (``GeneralizedRCNNTransform``) normalises and resizes the
   images and pads them into one batch; the given boxes are scaled the same way.
2. The backbone (+FPN) runs once per image.
3. The box branch (``box_roi_pool`` -> ``box_head`` -> ``box_predictor``) scores each
   given box; the mask channel is the best non-background class, and the **mask
   score is that class's softmax probability** (box regression is ignored: the
   box is given).
4. The mask branch (``mask_roi_pool`` -> ``mask_head`` -> ``mask_predictor``) gives
   28x28 logits; the chosen channel's sigmoid is pasted at original resolution with
   torchvision's ``paste_masks_in_image`` after scaling the boxes back
   (``transform.postprocess``), then thresholded (default 0.5).
5. Each mask is restricted to its box's pixel extent (the paste can bleed one
   pixel past the box), so every pseudo mask lies inside its given box.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.models.detection.transform import resize_boxes

from vloss.teacher.output import TeacherOutput, crop_to_boxes


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float in [0, 1] (what torchvision detectors take)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    return torch.tensor(image).permute(2, 0, 1).float().div_(255.0)  # copies: the array may be read-only


class BoxConditionedMaskRCNN:
    """Predict one mask per given box with a torchvision Mask R-CNN.

    Args:
        model: a ``MaskRCNN`` (e.g. from ``vloss.teacher.architectures.load_teacher``).
        mask_threshold: probability above which a pixel is in the mask.
        device: torch device to run on.
        crop_to_box: restrict masks to their box's pixel extent.
    """

    def __init__(self, model: MaskRCNN, *, mask_threshold: float = 0.5, device: str | torch.device = "cpu",
                 crop_to_box: bool = True) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.mask_threshold = float(mask_threshold)
        self.crop_to_box = crop_to_box

    @torch.no_grad()
    def predict_probs(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[dict]:
        """Mask probabilities at original resolution.

        Args:
            images: per image ``[3, H, W]`` float in [0, 1].
            boxes: per image ``[N_i, 4]`` ``xyxy`` boxes in original pixels.
        Returns:
            per image ``{"masks": [N_i, 1, H, W] float, "scores": [N_i], "labels": [N_i]}``.
        """
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        if not images:
            return []
        m = self.model
        images = [im.to(self.device) for im in images]
        boxes = [b.to(self.device, torch.float32).reshape(-1, 4) for b in boxes]
        original_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        batch, _ = m.transform(images)                               # tensors [B, 3, H', W']
        features = m.backbone(batch.tensors)                          # {level: [B, C, h, w]}
        rois = [resize_boxes(b, osz, nsz) for b, osz, nsz in zip(boxes, original_sizes, batch.image_sizes)]

        heads = m.roi_heads
        box_feats = heads.box_head(heads.box_roi_pool(features, rois, batch.image_sizes))
        class_logits, _ = heads.box_predictor(box_feats)             # [sum N, C]
        probs = torch.softmax(class_logits, dim=-1)
        scores, labels = probs[:, 1:].max(dim=-1)                     # best non-background class
        labels = labels + 1                                           # [sum N]

        mask_feats = heads.mask_head(heads.mask_roi_pool(features, rois, batch.image_sizes))
        mask_logits = heads.mask_predictor(mask_feats)                # [sum N, C, 28, 28]
        counts = [len(b) for b in rois]
        mask_probs = maskrcnn_inference(mask_logits, list(labels.split(counts)))  # [N_i, 1, 28, 28]
        results = [{"boxes": r, "labels": lab, "scores": sc, "masks": mp}
                   for r, lab, sc, mp in zip(rois, labels.split(counts), scores.split(counts), mask_probs)]
        return m.transform.postprocess(results, batch.image_sizes, original_sizes)

    def predict(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[TeacherOutput]:
        """Binary masks for the given boxes.

        Args:
            images: per image ``[H, W, 3]`` uint8.
            boxes: per image ``[N_i, 4]`` float ``xyxy`` boxes.
        Returns:
            one ``TeacherOutput`` per image, boxes in the given order.
        """
        outs: list[TeacherOutput | None] = [None] * len(images)
        keep = [i for i, b in enumerate(boxes) if len(b) > 0]
        for i, image in enumerate(images):
            if i not in keep:
                h, w = image.shape[:2]
                outs[i] = TeacherOutput(np.zeros((0, h, w), bool), np.zeros(0, np.float32), np.zeros(0, np.int64))
        tensors = [image_to_tensor(images[i]) for i in keep]
        box_t = [torch.as_tensor(np.asarray(boxes[i], dtype=np.float32)).reshape(-1, 4) for i in keep]
        for i, res in zip(keep, self.predict_probs(tensors, box_t)):
            masks = (res["masks"][:, 0] > self.mask_threshold).cpu().numpy()   # [N, H, W]
            if self.crop_to_box:
                masks = crop_to_boxes(masks, np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4))
            outs[i] = TeacherOutput(masks, res["scores"].float().cpu().numpy(),
                                    res["labels"].long().cpu().numpy())
        return outs  # type: ignore[return-value]
