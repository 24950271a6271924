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
   28x28 logits; the chosen channel's sigmoid is pasted at original resolution the way
   torchvision's ``paste_masks_in_image`` does after scaling the boxes back
   (``transform.postprocess``), then thresholded (default 0.5).
5. Each mask is restricted to its box's pixel extent (the paste can bleed one
   pixel past the box), so every pseudo mask lies inside its given box.

Memory: :meth:`BoxConditionedMaskRCNN.predict` pastes box by box into the box's own extent
(:func:`paste_box_mask`), never at full resolution, so an image's teacher memory is its input
tensors (about 16 bytes per pixel: the uint8 image, its float copy and the resized batch) plus
the box crops, and does not grow with boxes x height x width. :meth:`predict_probs` keeps
torchvision's full-resolution paste as the reference it is tested against.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks, maskrcnn_inference
from torchvision.models.detection.transform import resize_boxes

from vloss.teacher.output import TeacherOutput, box_pixel_bounds


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float in [0, 1] (what torchvision detectors take)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    return torch.tensor(image).permute(2, 0, 1).float().div_(255.0)  # copies: the array may be read-only


def paste_box_mask(probs: torch.Tensor, box: torch.Tensor, height: int, width: int
                   ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """One box's 28x28 mask probabilities pasted into its own extent, as ``paste_masks_in_image`` would.

    Args:
        probs: ``[M, M]`` probabilities (M = 28), before torchvision's 1-pixel padding.
        box: ``[4]`` ``xyxy`` box in original pixels (as ``transform.postprocess`` scales it back).
        height, width: the image size.

    Returns:
        (``[y1 - y0, x1 - x0]`` probabilities, ``(y0, y1, x0, x1)``): exactly the values
        torchvision's full-image paste puts in that window; it is zero everywhere else.
    """
    padded, scale = expand_masks(probs[None, None], padding=1)  # [1, 1, M+2, M+2]
    b = expand_boxes(box[None].float(), scale).to(dtype=torch.int64)[0]
    w = max(int(b[2] - b[0] + 1), 1)
    h = max(int(b[3] - b[1] + 1), 1)
    resized = F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)[0, 0]  # [h, w]
    x0, x1 = max(int(b[0]), 0), min(int(b[2]) + 1, width)
    y0, y1 = max(int(b[1]), 0), min(int(b[3]) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return probs.new_zeros((0, 0)), (0, 0, 0, 0)
    return resized[y0 - int(b[1]): y1 - int(b[1]), x0 - int(b[0]): x1 - int(b[0])], (y0, y1, x0, x1)


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
    def _heads(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> tuple[list[dict], list, list]:
        """Box and mask heads on the given boxes: per image ``{"boxes" (resized), "labels", "scores",
        "masks" [N, 1, 28, 28]}``, the resized image sizes and the original sizes."""
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
        return results, list(batch.image_sizes), original_sizes

    @torch.no_grad()
    def predict_probs(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[dict]:
        """Mask probabilities at original resolution (torchvision's own paste; the reference).

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
        results, image_sizes, original_sizes = self._heads(images, boxes)
        return self.model.transform.postprocess(results, image_sizes, original_sizes)

    @torch.no_grad()
    def predict(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[TeacherOutput]:
        """Binary masks for the given boxes, pasted box by box (memory bounded by the box areas).

        Args:
            images: per image ``[H, W, 3]`` uint8.
            boxes: per image ``[N_i, 4]`` float ``xyxy`` boxes.
        Returns:
            one ``TeacherOutput`` per image, boxes in the given order.
        """
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        outs: list[TeacherOutput | None] = [None] * len(images)
        keep = [i for i, b in enumerate(boxes) if len(b) > 0]
        for i, image in enumerate(images):
            if i not in keep:
                outs[i] = TeacherOutput.empty(*image.shape[:2])
        if not keep:
            return outs  # type: ignore[return-value]
        tensors = [image_to_tensor(images[i]) for i in keep]
        box_t = [torch.as_tensor(np.asarray(boxes[i], dtype=np.float32)).reshape(-1, 4) for i in keep]
        results, image_sizes, original_sizes = self._heads(tensors, box_t)
        del tensors
        for i, res, im_s, (h, w) in zip(keep, results, image_sizes, original_sizes):
            pasted_boxes = resize_boxes(res["boxes"], im_s, (h, w))  # what postprocess pastes with
            given = np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4)
            crops, bounds = [], []
            for k in range(len(given)):
                probs, (y0, y1, x0, x1) = paste_box_mask(res["masks"][k, 0], pasted_boxes[k], h, w)
                binary = (probs > self.mask_threshold).cpu().numpy()   # [y1 - y0, x1 - x0]
                if self.crop_to_box:  # keep the part inside the given box's pixel extent
                    r0, r1, c0, c1 = box_pixel_bounds(given[k], h, w)
                    crop = np.zeros((r1 - r0, c1 - c0), dtype=bool)
                    ya, yb, xa, xb = max(y0, r0), min(y1, r1), max(x0, c0), min(x1, c1)
                    if yb > ya and xb > xa:
                        crop[ya - r0:yb - r0, xa - c0:xb - c0] = binary[ya - y0:yb - y0, xa - x0:xb - x0]
                    crops.append(crop)
                    bounds.append((r0, r1, c0, c1))
                else:
                    crops.append(binary)
                    bounds.append((y0, y1, x0, x1))
            outs[i] = TeacherOutput(crops, np.array(bounds, dtype=np.int64).reshape(-1, 4),
                                    res["scores"].float().cpu().numpy(), res["labels"].long().cpu().numpy(), h, w)
        return outs  # type: ignore[return-value]
