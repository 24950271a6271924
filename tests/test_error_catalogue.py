"""The bad-input catalogue of docs/ERRORS.md (issue #13 item 6): one case per row, same ids.

Each case builds its bad input under ``tmp_path``, calls the entry point a user reaches (a reader, a
job's command line, a checkpoint loader, a scorer, a decode step of a job) and checks what the row
says the user sees: the exception type and that its message names the file, the record, the field or
the key; a counted skip with its reason; or, for valid images in unusual modes, the right pixels
(computed here from the values written into the file). Nothing here starts Ray or trains.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import pickle
import re
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from vloss.data.errors import DataFormatError

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "docs" / "ERRORS.md"


# ----------------------------------------------------------------------------- inputs

def _json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=1))
    return path


def _detection() -> dict:
    """A valid COCO detection file: one 8 x 8 image, one box (annotation id 7), one category."""
    return {"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
                             "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}],
            "categories": [{"id": 1, "name": "dog"}]}


def _lvis() -> dict:
    """A valid LVIS v1 file with the same image and box."""
    return {"images": [{"id": 1, "height": 8, "width": 8, "coco_url": "http://x/val2017/000000000001.jpg",
                        "neg_category_ids": [], "not_exhaustive_category_ids": []}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
                             "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}],
            "categories": [{"id": 1, "name": "dog", "frequency": "f", "synonyms": ["dog"], "def": "",
                            "image_count": 1, "instance_count": 1}]}


def _panoptic(segment_ids: list[int], height: int = 6, width: int = 8) -> dict:
    return {"images": [{"id": 1, "file_name": "1.jpg", "height": height, "width": width}],
            "annotations": [{"image_id": 1, "file_name": "1.png", "segments_info": [
                {"id": s, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 8, 3], "area": 24} for s in segment_ids]}],
            "categories": [{"id": 1, "name": "dog", "isthing": 1}]}


def _panoptic_files(root: Path, image_height: int = 6) -> tuple[Path, Path]:
    """An image folder and a PNG folder: ``1.png`` holds segment 1 (top rows) and 2 (bottom left)."""
    from vloss.data.masks import id2rgb

    (root / "img").mkdir()
    (root / "png").mkdir()
    ids = np.zeros((6, 8), np.int64)
    ids[:3] = 1
    ids[3:, :4] = 2
    Image.fromarray(id2rgb(ids)).save(root / "png" / "1.png")
    Image.fromarray(np.zeros((image_height, 8, 3), np.uint8)).save(root / "img" / "1.jpg")
    return root / "img", root / "png"


def _rle(height: int = 8, width: int = 8) -> dict:
    from pycocotools import mask as mask_utils

    m = np.zeros((height, width), np.uint8, order="F")
    m[1:5, 1:5] = 1
    rle = mask_utils.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _encoded(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor a header that lies about the size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


def _png16(values: np.ndarray, colour_type: int) -> bytes:
    """[H, W] (grey, type 0) or [H, W, C] (RGB 2, RGBA 6) uint16 values as a 16-bit PNG."""
    rows = [b"\x00" + values[y].astype(">u2").tobytes() for y in range(values.shape[0])]
    return _png(values.shape[1], values.shape[0], 16, colour_type, b"".join(rows))


def _huge_png() -> bytes:
    """A 300-byte PNG whose header says 20000 x 20000 (400 M pixels): what a decompression bomb looks like."""
    return _png(20000, 20000, 8, 2, b"\x00" * 64)


class _Payload:
    """Unpickled by a trusting loader, this creates ``marker`` (no shell, no os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ----------------------------------------------------------------------------- entry points

def _decoded(path: Path) -> dict[str, np.ndarray]:
    """``[H, W, 3]`` pixels of one image file as every decoding entry point gives them."""
    from pipelines.common.inference_decode import decode_eval_images
    from pipelines.pseudo_masks.decode import decode_images
    from vloss.data.images import read_image

    with Image.open(path) as im:
        w, h = im.size
    job = decode_images({"file_name": np.array([path.name], dtype=object), "height": np.array([h]),
                         "width": np.array([w]), "image_id": np.array([1])}, str(path.parent))
    assert job["error"][0] == ""
    ev = decode_eval_images({"index": np.array([0]), "path": np.array([str(path)], dtype=object),
                             "height": np.array([h]), "width": np.array([w])}, size=min(h, w),
                            max_size=max(h, w), keep_original=True)
    assert ev["error"][0] == ""
    return {"read_image (Predictor, python -m vloss predict)": read_image(path),
            "pseudo-mask decode step": np.frombuffer(job["pixels"][0], np.uint8).reshape(h, w, 3),
            "evaluation / prediction decode step": np.frombuffer(ev["original"][0], np.uint8).reshape(h, w, 3)}


def _assert_pixels(path: Path, want) -> None:
    want = np.asarray(want, np.uint8)
    for entry, got in _decoded(path).items():
        assert got.dtype == np.uint8 and got.shape == want.shape, entry
        assert np.array_equal(got, want), f"{entry}: {got.tolist()} != {want.tolist()}"


def _skip_reasons(path: Path, height: int = 8, width: int = 8) -> list[str]:
    """The counted-skip reasons the two decode steps of the jobs record for ``path`` (never an exception)."""
    from pipelines.common.inference_decode import decode_eval_images
    from pipelines.pseudo_masks.decode import decode_images

    job = decode_images({"file_name": np.array([path.name], dtype=object), "height": np.array([height]),
                         "width": np.array([width]), "image_id": np.array([1])}, str(path.parent))
    ev = decode_eval_images({"index": np.array([0]), "path": np.array([str(path)], dtype=object),
                             "height": np.array([height]), "width": np.array([width])}, size=8, max_size=32)
    assert job["pixels"][0] == b"" and ev["pixels"][0] == b""
    return [str(job["error"][0]), str(ev["error"][0])]


def _cli(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    """Run a command's ``main``; (exit status, stderr). argparse errors exit through SystemExit."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def _error_line(err: str) -> str:
    """The one line of a command's stderr that reports its error (argparse prints a usage block first)."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _predict_cli(images: list[Path], checkpoint: Path, out: Path) -> tuple[int, str]:
    from vloss.inference.predict_cli import main

    return _cli(main, [*map(str, images), "--checkpoint", str(checkpoint), "--things", "dog", "--out", str(out)])


def _raises(exc_type, fn: Callable, *needles: str) -> str:
    """``fn()`` raises ``exc_type`` whose message contains every needle; returns the message."""
    with pytest.raises(exc_type) as info:
        fn()
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def _readers(image_dir: Path) -> dict[str, Callable[[Path], object]]:
    """Every annotation reader a user's file goes through, by the entry point that calls it."""
    from pipelines.pseudo_masks.job import load_detection_input
    from vloss.data.coco_captions import read_coco_captions
    from vloss.data.coco_detection import read_coco_detection
    from vloss.data.coco_panoptic import read_coco_panoptic
    from vloss.data.lvis_format import read_lvis

    return {"read_coco_detection": lambda p: read_coco_detection(p, image_dir),
            "read_coco_panoptic": lambda p: read_coco_panoptic(p, image_dir, image_dir),
            "read_lvis": lambda p: read_lvis(p, image_dir),
            "read_coco_captions": lambda p: read_coco_captions(p, image_dir),
            "pseudo-mask job input": lambda p: load_detection_input(str(p))}


def _scorer_json_loaders() -> dict[str, Callable[[Path], object]]:
    """The scorers' own JSON loaders (ground truth and results files of ``python -m vloss.eval``)."""
    from vloss.eval.coco_eval import load_coco_gt
    from vloss.eval.lvis_eval import load_lvis_gt
    from vloss.eval.mask_results import load_results
    from vloss.eval.pq import load_json

    return {"load_lvis_gt": load_lvis_gt, "load_coco_gt": load_coco_gt, "load_results": load_results,
            "pq load_json": load_json}


# ----------------------------------------------------------------------------- the cases, one per row

def case_malformed_json(tmp_path: Path, request) -> None:
    text = json.dumps(_detection(), indent=1).replace('"height": 8,', '"height": 8', 1)  # a missing comma
    path = tmp_path / "bad.json"
    path.write_text(text)
    line = text[: text.index('"width"')].count("\n") + 1
    for name, read in {**_readers(tmp_path), **_scorer_json_loaders()}.items():
        msg = _raises(DataFormatError, lambda: read(path), str(path), "not valid JSON")
        assert re.search(rf"line {line},? column \d+", msg), (name, msg)
    binary = tmp_path / "binary.json"
    binary.write_bytes(_encoded(Image.new("RGB", (2, 2))))  # e.g. an image passed as --gt-json
    for name, read in {**_readers(tmp_path), **_scorer_json_loaders()}.items():
        _raises(DataFormatError, lambda: read(binary), str(binary), "not valid")
    from vloss.eval.__main__ import main as eval_main

    code, err = _cli(eval_main, ["lvis", "--gt-json", str(binary), "--results", str(path)])
    assert code == 2 and str(binary) in _error_line(err)


def case_truncated_json(tmp_path: Path, request) -> None:
    text = json.dumps(_detection(), indent=1)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])  # an interrupted download or copy
    for name, read in {**_readers(tmp_path), **_scorer_json_loaders()}.items():
        _raises(DataFormatError, lambda: read(path), str(path), "not valid JSON", "line")
    empty = tmp_path / "empty.json"
    empty.write_text("")
    for name, read in _readers(tmp_path).items():
        _raises(DataFormatError, lambda: read(empty), str(empty), "not valid JSON")


def case_unknown_category(tmp_path: Path, request) -> None:
    det = _detection()
    det["annotations"][0]["category_id"] = 99
    path = _json(tmp_path / "det.json", det)
    readers = _readers(tmp_path)
    for name in ("read_coco_detection", "pseudo-mask job input"):
        _raises(DataFormatError, lambda: readers[name](path), str(path), "annotation id 7", "'category_id'", "99")
    lvis = _lvis()
    lvis["annotations"][0]["category_id"] = 99
    path = _json(tmp_path / "lvis.json", lvis)
    _raises(DataFormatError, lambda: readers["read_lvis"](path), str(path), "annotation id 7 of image id 1",
            "'category_id'", "category id 99 is not in 'categories'")
    lvis = _lvis()
    lvis["images"][0]["neg_category_ids"] = [5]
    path = _json(tmp_path / "lvis_neg.json", lvis)
    _raises(DataFormatError, lambda: readers["read_lvis"](path), str(path), "image id 1", "'neg_category_ids'")
    pan = _panoptic([1])
    pan["annotations"][0]["segments_info"][0]["category_id"] = 99
    path = _json(tmp_path / "pan.json", pan)
    _raises(DataFormatError, lambda: readers["read_coco_panoptic"](path), str(path), "image id 1 segment id 1",
            "'category_id'", "99")
    from vloss.eval.lvis_eval import lvis_mask_ap

    gt = _json(tmp_path / "gt.json", _lvis())
    results = _json(tmp_path / "results.json", [{"image_id": 1, "category_id": 99, "segmentation": _rle(),
                                                 "score": 0.9}])
    _raises(DataFormatError, lambda: lvis_mask_ap(gt, results), str(results), "results[0], image_id=1",
            "'category_id'", "unknown category id 99")


def case_degenerate_box(tmp_path: Path, request) -> None:
    readers = _readers(tmp_path)
    for box in ([1, 1, 0, 4], [1, 1, 4, -2]):
        det = _detection()
        det["annotations"][0]["bbox"] = box
        path = _json(tmp_path / "det.json", det)
        _raises(DataFormatError, lambda: readers["read_coco_detection"](path), str(path),
                "annotation id 7 of image id 1", "'bbox'", "box width and height must be positive")
        _raises(DataFormatError, lambda: readers["pseudo-mask job input"](path), str(path), "annotation id 7",
                "'bbox'", "non-positive size")
        lvis = _lvis()
        lvis["annotations"][0]["bbox"] = box
        path = _json(tmp_path / "lvis.json", lvis)
        _raises(DataFormatError, lambda: readers["read_lvis"](path), str(path), "'bbox'", "must be positive")
    det = _detection()
    det["annotations"][0]["bbox"] = [20, 20, 4, 4]  # entirely outside the 8 x 8 image: nothing to segment
    path = _json(tmp_path / "outside.json", det)
    _raises(DataFormatError, lambda: readers["pseudo-mask job input"](path), str(path), "annotation id 7",
            "'bbox'", "lies entirely outside image 1 (8x8)")


def case_missing_image(tmp_path: Path, request) -> None:
    from vloss.data.images import read_image

    missing = tmp_path / "gone.jpg"
    for reason in _skip_reasons(missing):
        assert str(missing) in reason and "FileNotFoundError" in reason, reason
    _raises(FileNotFoundError, lambda: read_image(missing), str(missing))
    from vloss.inference.predict_cli import main

    code, err = _cli(main, [str(missing), "--checkpoint", "unused", "--things", "dog", "--out", str(tmp_path / "o")])
    assert code == 2 and str(missing) in err and "no such file" in err


def case_corrupt_image(tmp_path: Path, request) -> None:
    from vloss.data.images import read_image

    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"this is not an image" * 10)
    for reason in _skip_reasons(bad):
        assert str(bad) in reason and "UnidentifiedImageError: cannot identify image file" in reason, reason
    _raises(OSError, lambda: read_image(bad), str(bad), "cannot identify image file")
    good = tmp_path / "good.png"
    good.write_bytes(_encoded(Image.new("RGB", (40, 30), (90, 90, 90))))
    code, err = _predict_cli([good, bad], request.getfixturevalue("tiny_weights_file"), tmp_path / "out")
    assert code == 0 and f"skipped {bad}" in err
    errors = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert [e["image"] for e in errors] == [str(bad)]
    assert [im["file_name"] for im in json.loads((tmp_path / "out" / "predictions.json").read_text())["images"]] \
        == ["good.png"]


def case_truncated_image(tmp_path: Path, request) -> None:
    from vloss.data.coco_panoptic import load_panoptic_ids
    from vloss.data.images import read_image
    from vloss.eval.pq import read_panoptic_png

    rng = np.random.default_rng(0)
    jpeg = _encoded(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    for reason in _skip_reasons(cut, 64, 64):
        assert str(cut) in reason and "truncated" in reason.lower(), reason
    _raises(OSError, lambda: read_image(cut), str(cut), "truncated")
    png = _encoded(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png[: len(png) // 2])
    _raises(DataFormatError, lambda: load_panoptic_ids(cut_png), str(cut_png), "cannot be read as an image")
    _raises(DataFormatError, lambda: read_panoptic_png(cut_png, 3), str(cut_png), "image_id=3", "not a readable PNG")


def case_grayscale_image(tmp_path: Path, request) -> None:
    values = np.array([[0, 77, 255], [10, 20, 30]], np.uint8)
    for fmt, suffix in (("PNG", "png"), ("TIFF", "tif")):
        path = tmp_path / f"gray.{suffix}"
        path.write_bytes(_encoded(Image.fromarray(values, "L"), fmt))
        _assert_pixels(path, np.repeat(values[:, :, None], 3, axis=2))
    path = tmp_path / "bits.png"
    bits = Image.new("1", (3, 2), 0)
    bits.putpixel((1, 0), 1)
    path.write_bytes(_encoded(bits))
    _assert_pixels(path, [[[0] * 3, [255] * 3, [0] * 3], [[0] * 3] * 3])


def case_cmyk_image(tmp_path: Path, request) -> None:
    cmyk = [(0, 255, 255, 0), (0, 0, 0, 0), (0, 0, 0, 255), (100, 0, 0, 0), (0, 255, 0, 55)]
    image = Image.new("CMYK", (len(cmyk), 1))
    for x, v in enumerate(cmyk):
        image.putpixel((x, 0), v)
    path = tmp_path / "cmyk.tif"
    path.write_bytes(_encoded(image, "TIFF"))
    # subtractive inks: channel = (255 - ink) * (255 - black) / 255 (values chosen to divide exactly)
    want = [[(255 - ink) * (255 - k) // 255 for ink in (c, m, y)] for c, m, y, k in cmyk]
    assert want == [[255, 0, 0], [255, 255, 255], [0, 0, 0], [155, 255, 255], [200, 0, 200]]
    _assert_pixels(path, [want])


def case_16bit_image(tmp_path: Path, request) -> None:
    grey = np.array([[65535, 32768, 256, 255, 0]], np.uint16)
    path = tmp_path / "grey16.png"
    path.write_bytes(_encoded(Image.fromarray(grey)))  # Pillow writes mode I;16 as a 16-bit grey PNG
    want = [[[v // 256] * 3 for v in grey[0]]]  # the top 8 of 16 bits: 65535 -> 255, 32768 -> 128
    assert [p[0] for p in want[0]] == [255, 128, 1, 0, 0]
    _assert_pixels(path, want)
    rgb = np.array([[[65535, 32768, 0], [256, 255, 65280]]], np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png16(rgb, 2))
    _assert_pixels(path, [[[255, 128, 0], [1, 0, 255]]])


def case_alpha_image(tmp_path: Path, request) -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = [0, 128, 255]
    path = tmp_path / "rgba.png"
    path.write_bytes(_encoded(Image.fromarray(rgba, "RGBA")))
    # composited onto black: colour * alpha / 255, rounded
    want = np.floor(rgba[..., :3].astype(float) * rgba[..., 3:4] / 255 + 0.5)
    assert want[0, 0].tolist() == [0, 0, 0] and want[0, 1].tolist() == [100, 50, 25]
    _assert_pixels(path, want)
    la = np.stack([np.full((2, 2), 100, np.uint8), np.array([[0, 255], [255, 0]], np.uint8)], axis=-1)
    path = tmp_path / "la.png"
    path.write_bytes(_encoded(Image.fromarray(la, "LA")))
    _assert_pixels(path, np.repeat(np.array([[0, 100], [100, 0]], np.uint8)[:, :, None], 3, axis=2))
    path = tmp_path / "rgba16.png"
    path.write_bytes(_png16(np.array([[[65535, 32768, 0, 65535], [65535, 65535, 65535, 0]]], np.uint16), 6))
    _assert_pixels(path, [[[255, 128, 0], [0, 0, 0]]])
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([10, 20, 30, 200, 150, 100] + [0] * 762)
    palette.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    path.write_bytes(_encoded(palette, transparency=0))  # palette entry 0 is transparent
    _assert_pixels(path, [[[0, 0, 0], [200, 150, 100]]])


def case_huge_image(tmp_path: Path, request) -> None:
    from vloss.data.coco_panoptic import load_panoptic_ids
    from vloss.data.images import read_image
    from vloss.eval.pq import read_panoptic_png

    huge = tmp_path / "huge.png"
    huge.write_bytes(_huge_png())
    limit = f"exceeds limit of {2 * Image.MAX_IMAGE_PIXELS} pixels"
    for reason in _skip_reasons(huge, 20000, 20000):
        assert str(huge) in reason and limit in reason, reason
    _raises(OSError, lambda: read_image(huge), str(huge), limit)
    _raises(DataFormatError, lambda: load_panoptic_ids(huge), str(huge), limit)
    _raises(DataFormatError, lambda: read_panoptic_png(huge, 5), str(huge), "image_id=5", limit)
    good = tmp_path / "good.png"
    good.write_bytes(_encoded(Image.new("RGB", (40, 30), (90, 90, 90))))
    code, err = _predict_cli([good, huge], request.getfixturevalue("tiny_weights_file"), tmp_path / "out")
    assert code == 0 and f"skipped {huge}" in err and limit in err
    assert [e["image"] for e in json.loads((tmp_path / "out" / "errors.json").read_text())] == [str(huge)]


def case_empty_annotations(tmp_path: Path, request) -> None:
    from vloss.data.coco_detection import read_coco_detection
    from vloss.data.coco_panoptic import read_coco_panoptic
    from vloss.data.lvis_format import read_lvis
    from vloss.eval.lvis_eval import lvis_mask_ap

    det = _detection()
    det["annotations"] = []
    path = _json(tmp_path / "det.json", det)
    assert read_coco_detection(path, tmp_path).num_annotations == 0  # images without boxes are valid COCO
    lvis = _lvis()
    lvis["annotations"] = []
    gt = _json(tmp_path / "lvis.json", lvis)
    assert read_lvis(gt, tmp_path).num_annotations == 0
    pan = _panoptic([1])
    pan["annotations"] = []
    path = _json(tmp_path / "pan.json", pan)
    _raises(DataFormatError, lambda: read_coco_panoptic(path, tmp_path, tmp_path), str(path), "image id 1",
            "'annotations'", "1 images have no annotation entry")
    results = _json(tmp_path / "results.json", [])
    _raises(DataFormatError, lambda: lvis_mask_ap(gt, results), str(results), "results list is empty")


def case_empty_annotations_pseudo_masks(tmp_path: Path, request) -> None:
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks
    from vloss.teacher.config import TeacherConfig

    det = _detection()
    det["annotations"] = []
    path = _json(tmp_path / "det.json", det)
    cfg = PseudoMaskJobConfig(annotations=str(path), images=str(tmp_path), out=str(tmp_path / "out"),
                              teacher=TeacherConfig(backend="box"))
    _raises(ValueError, lambda: run_pseudo_masks(cfg), str(path))


def case_wrong_architecture_checkpoint(tmp_path: Path, request) -> None:
    from vloss.inference.predictor import Predictor
    from vloss.model import WeightsError
    from vloss.teacher.architectures import CheckpointError
    from vloss.teacher.config import TeacherConfig, build_teacher

    teacher = request.getfixturevalue("tiny_checkpoint")  # a Mask R-CNN state dict
    weights = request.getfixturevalue("tiny_weights_file")  # a VLOSS "tiny" weights file
    _raises(WeightsError, lambda: Predictor.from_checkpoint(teacher, preset="tiny"), str(teacher),
            "weights do not fit the VLOSS model", "missing", "unexpected")
    _raises(CheckpointError, lambda: build_teacher(TeacherConfig(arch="maskrcnn_resnet18_fpn"), str(weights)),
            str(weights), "not a Mask R-CNN state dict")
    msg = _raises(WeightsError, lambda: Predictor.from_checkpoint(weights, overrides=["model.decoder.hidden_dim=48"]),
                  str(weights), "weights do not fit the VLOSS model")
    assert re.search(r"parameter 'decoder\.[\w.]+': expected shape \(\d+, 48\), found \(\d+, 64\)", msg), msg


def case_non_checkpoint_file(tmp_path: Path, request) -> None:
    from vloss.checkpoint import load_model_checkpoint, load_training_checkpoint
    from vloss.config import job_preset
    from vloss.inference.predictor import Predictor
    from vloss.model import VLOSS, load_model_weights, load_text_weights
    from vloss.model.backbone import create_timm_features
    from vloss.teacher.architectures import CheckpointError
    from vloss.teacher.config import TeacherConfig, build_teacher

    files = {"random.pt": np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes(),
             "empty.pt": b"", "notes.pt": b"hello world\n",
             "lfs.pt": b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 9\n",
             "image.pt": _encoded(Image.new("RGB", (4, 4)), "JPEG")}
    model = VLOSS(job_preset("tiny").model)
    backbone = job_preset("tiny").model.backbone
    safe = "not a checkpoint this job can load safely"
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        _raises(ValueError, lambda: load_model_checkpoint(path, preset="tiny"), str(path), safe)
        _raises(ValueError, lambda: Predictor.from_checkpoint(path, preset="tiny"), str(path), safe)
        _raises(ValueError, lambda: load_model_weights(model, path), str(path), safe)
        _raises(ValueError, lambda: load_text_weights(model, path), str(path), safe)
        _raises(ValueError, lambda: create_timm_features(backbone, path), str(path))
        _raises(CheckpointError, lambda: build_teacher(TeacherConfig(arch="maskrcnn_resnet18_fpn"), str(path)),
                str(path), "not a loadable weights-only torch checkpoint")
    folder = tmp_path / "not_a_checkpoint"
    folder.mkdir()
    for load in (load_training_checkpoint, load_model_checkpoint, Predictor.from_checkpoint):
        _raises(FileNotFoundError, lambda: load(folder), str(folder), "needs state.pt and meta.json")
    from vloss.inference.predict_cli import main

    good = tmp_path / "good.png"
    good.write_bytes(_encoded(Image.new("RGB", (8, 8))))
    code, err = _cli(main, [str(good), "--checkpoint", str(tmp_path / "notes.pt"), "--config", "tiny",
                            "--things", "dog", "--out", str(tmp_path / "o")])
    assert code == 2 and f"{tmp_path / 'notes.pt'}: {safe}" in _error_line(err)


def case_code_running_pickle(tmp_path: Path, request) -> None:
    import dataclasses

    import torch

    from pipelines.evaluate.model import load_eval_model
    from pipelines.predict.config import PredictJobConfig
    from pipelines.predict.job import run_prediction
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks
    from vloss.checkpoint import load_model_checkpoint, load_training_checkpoint
    from vloss.config import job_preset
    from vloss.inference.export_cli import main as export_main
    from vloss.inference.predict_cli import main as predict_main
    from vloss.inference.predictor import Predictor
    from vloss.model import VLOSS, load_backbone_weights, load_model_weights, load_text_weights
    from vloss.model.backbone import create_timm_features
    from vloss.teacher.architectures import read_state_dict
    from vloss.teacher.config import TeacherConfig, build_teacher

    marker = tmp_path / "payload_ran"
    plain = tmp_path / "plain.pth"  # a bare pickle
    with open(plain, "wb") as f:
        pickle.dump({"model": _Payload(marker)}, f)
    zipped = tmp_path / "zipped.pth"  # torch.save's zip format, real tensors beside the payload
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, zipped)
    ckpt_dir = tmp_path / "checkpoint_000001"  # a training checkpoint directory whose state.pt is the pickle
    ckpt_dir.mkdir()
    (ckpt_dir / "state.pt").write_bytes(plain.read_bytes())
    (ckpt_dir / "meta.json").write_text(json.dumps({"config": {}}))
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.jpg")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("dog\n")
    det = _json(tmp_path / "det.json", _detection())

    tiny = job_preset("tiny").model
    model = VLOSS(tiny)
    r18 = TeacherConfig(arch="maskrcnn_resnet18_fpn")
    for path in (plain, zipped):
        loaders = {
            "load_model_checkpoint": lambda: load_model_checkpoint(path),
            "Predictor.from_checkpoint": lambda: Predictor.from_checkpoint(path, preset="tiny"),
            "evaluation job load_eval_model": lambda: load_eval_model(str(path), "tiny", []),
            "prediction job (before Ray)": lambda: run_prediction(PredictJobConfig(
                images=str(images), vocab_file=str(vocab), checkpoint=str(path), out=str(tmp_path / "pred"),
                config="tiny")),
            "load_model_weights": lambda: load_model_weights(model, path),
            "load_backbone_weights": lambda: load_backbone_weights(model, path),
            "load_text_weights": lambda: load_text_weights(model, path),
            "model.backbone.weights (timm)": lambda: create_timm_features(tiny.backbone, path),
            "model.text.weights (VLOSS)": lambda: VLOSS(dataclasses.replace(
                tiny, text=dataclasses.replace(tiny.text, weights=str(path)))),
            "teacher read_state_dict": lambda: read_state_dict(str(path)),
            "teacher build_teacher (path)": lambda: build_teacher(r18, str(path)),
            "teacher build_teacher (bytes)": lambda: build_teacher(r18, path.read_bytes(), checkpoint_name=str(path)),
            "pseudo-mask job (before Ray)": lambda: run_pseudo_masks(PseudoMaskJobConfig(
                annotations=str(det), images=str(images), out=str(tmp_path / "pm"), checkpoint=str(path),
                teacher=r18)),
        }
        for name, load in loaders.items():
            with pytest.raises(ValueError) as info:
                load()
            assert str(path) in str(info.value), (name, str(info.value))
        for main, argv in ((predict_main, [str(images), "--checkpoint", str(path), "--config", "tiny", "--things",
                                           "dog", "--out", str(tmp_path / "o")]),
                           (export_main, ["--checkpoint", str(path), "--config", "tiny", "--things", "dog",
                                          "--size", "64", "64", "--out", str(tmp_path / "m.onnx")])):
            code, err = _cli(main, argv)
            assert code == 2 and str(path) in err and "load safely" in err, err
    for name, load in {"load_training_checkpoint (trainer resume)": lambda: load_training_checkpoint(ckpt_dir),
                       "load_model_checkpoint": lambda: load_model_checkpoint(ckpt_dir),
                       "Predictor.from_checkpoint": lambda: Predictor.from_checkpoint(ckpt_dir)}.items():
        _raises(ValueError, load, str(ckpt_dir / "state.pt"), "not a checkpoint this job can load safely")
    assert not (tmp_path / "pred").exists() and not (tmp_path / "pm").exists()
    assert not marker.exists()  # nothing in any file ran


def case_unknown_set_key(tmp_path: Path, request) -> None:
    import jobs.evaluate
    import jobs.predict
    import jobs.pseudo_masks
    import jobs.train
    from vloss.config import job_preset
    from vloss.config_io import apply_overrides

    _raises(ValueError, lambda: apply_overrides(job_preset("tiny"), ["decoder.nosuch=1"]),
            "override 'decoder.nosuch=1': unknown key 'model.decoder.nosuch'; known here: [")
    eval_args = ["--task", "lvis", "--checkpoint", "c"]
    predict_args = ["--images", "i", "--vocab-file", "v", "--checkpoint", "c", "--out", "o"]
    pm_args = ["--annotations", "a.json", "--images", "i", "--out", "o", "--backend", "box"]
    for parse, argv, key in ((jobs.train.parse_args, ["--set", "train.nosuch=1"], "train.nosuch"),
                             (jobs.train.parse_args, ["--set", "optim.base_lrr=1e-4"], "optim.base_lrr"),
                             (jobs.evaluate.parse_args, [*eval_args, "--set", "nosuch=1"], "nosuch"),
                             (jobs.predict.parse_args, [*predict_args, "--set", "nosuch=1"], "nosuch"),
                             (jobs.pseudo_masks.parse_args, [*pm_args, "--set", "teacher.nosuch=1"], "teacher.nosuch")):
        code, err = _cli(parse, argv)
        line = _error_line(err)
        assert code == 2 and f"error: override '{key}=" in line and f"unknown key '{key}'; known here: [" in line


def case_unknown_set_key_cluster(tmp_path: Path, request) -> None:
    import jobs.train

    code, err = _cli(jobs.train.parse_args, ["--set", "cluster.nosuch=1"])
    assert code == 2 and "'cluster.nosuch=1'" in err and "unknown key 'cluster.nosuch'" in err, err


def case_wrong_set_type(tmp_path: Path, request) -> None:
    import jobs.evaluate
    import jobs.pseudo_masks
    import jobs.train

    pm_args = ["--annotations", "a.json", "--images", "i", "--out", "o", "--backend", "box"]
    for parse, argv, message in (
            (jobs.train.parse_args, ["--set", "train.epochs=abc"], "override 'train.epochs=abc': cannot parse 'abc'"),
            (jobs.train.parse_args, ["--set", "train.epochs=1.5"],
             "override 'train.epochs=1.5': expected an int, got 1.5"),
            (jobs.train.parse_args, ["--set", "train.require_pretrained=maybe"],
             "override 'train.require_pretrained=maybe': expected a bool (true/false), got 'maybe'"),
            (jobs.train.parse_args, ["--set", "model.decoder=3"], "'model.decoder' is a section; set its fields"),
            (jobs.train.parse_args, ["--set", "train.epochs"], "override 'train.epochs' is not of the form key=value"),
            (jobs.evaluate.parse_args, ["--task", "lvis", "--checkpoint", "c", "--set", "size=big"],
             "override 'size=big': cannot parse 'big'"),
            (jobs.pseudo_masks.parse_args, [*pm_args, "--set", "teacher.mask_threshold=2"],
             "override 'teacher.mask_threshold=2': mask_threshold must lie in [0, 1), got 2.0")):
        code, err = _cli(parse, argv)
        assert code == 2 and message in err, (argv, err)


def case_unknown_task(tmp_path: Path, request) -> None:
    import jobs.evaluate
    import jobs.predict
    from pipelines.evaluate.config import EvalJobConfig
    from vloss.__main__ import main as vloss_main
    from vloss.eval.__main__ import main as eval_main
    from vloss.inference.predict_cli import main as predict_main
    from vloss.inference.predictor import PredictorSettings

    code, err = _cli(jobs.evaluate.parse_args, ["--task", "nosuch", "--checkpoint", "c"])
    assert code == 2 and "argument --task: invalid choice: 'nosuch' (choose from" in err and "'lvis'" in err
    code, err = _cli(jobs.evaluate.parse_args, ["--task", "lvis", "--checkpoint", "c", "--set", "task=nosuch"])
    assert code == 2 and "unknown task 'nosuch'; choose one of (" in err
    _raises(ValueError, lambda: EvalJobConfig(task="nosuch", checkpoint="c", out="o"), "unknown task 'nosuch'",
            "ade20k_panoptic")
    code, err = _cli(jobs.predict.parse_args, ["--images", "i", "--vocab-file", "v", "--checkpoint", "c", "--out", "o",
                                               "--set", "task=nosuch"])
    assert code == 2 and "task must be panoptic, instance or semantic, got 'nosuch'" in err
    code, err = _cli(predict_main, ["x.jpg", "--checkpoint", "c", "--things", "a", "--out", "o", "--task", "nosuch"])
    assert code == 2 and "argument --task: invalid choice: 'nosuch'" in err
    _raises(ValueError, lambda: PredictorSettings(task="nosuch"), "task must be one of", "'nosuch'")
    code, err = _cli(eval_main, ["nosuch"])
    assert code == 2 and "invalid choice: 'nosuch' (choose from 'pq', 'lvis', 'coco')" in err
    code, err = _cli(vloss_main, ["nosuch"])
    assert code == 2 and "unknown command 'nosuch'; choose one of predict, export" in err


def case_results_unknown_image_id(tmp_path: Path, request) -> None:
    from vloss.eval.__main__ import main as eval_main
    from vloss.eval.coco_eval import coco_mask_ap
    from vloss.eval.lvis_eval import lvis_mask_ap
    from vloss.eval.pq import pq_compute
    from vloss.eval.pq_synthetic import write_synthetic_dataset

    good = {"image_id": 1, "category_id": 1, "segmentation": _rle(), "score": 0.9}
    results = _json(tmp_path / "results.json", [good, {**good, "image_id": 999}])
    lvis_gt = _json(tmp_path / "lvis.json", _lvis())
    coco_gt = _json(tmp_path / "coco.json", _detection())
    where = (str(results), "[results[1], image_id=999] field 'image_id': unknown image id 999")
    _raises(DataFormatError, lambda: lvis_mask_ap(lvis_gt, results), *where)
    _raises(DataFormatError, lambda: coco_mask_ap(coco_gt, results), *where)
    code, err = _cli(eval_main, ["lvis", "--gt-json", str(lvis_gt), "--results", str(results)])
    assert code == 2 and where[1] in _error_line(err)
    paths = write_synthetic_dataset(tmp_path / "pq", num_images=2, height=8, width=10, seed=1)
    pred = json.loads(paths["pred_json"].read_text())
    extra = copy.deepcopy(pred["annotations"][0])
    extra["image_id"] = 999
    pred["annotations"].append(extra)
    paths["pred_json"].write_text(json.dumps(pred))
    _raises(DataFormatError, lambda: pq_compute(paths["gt_json"], paths["gt_dir"], paths["pred_json"],
                                                paths["pred_dir"], workers=1),
            str(paths["pred_json"]), "image_id=999", "not in the ground truth")


def case_panoptic_png_json_mismatch(tmp_path: Path, request) -> None:
    from pipelines.train.shards import build_rows
    from pipelines.train.sources import panoptic_sources
    from vloss.data.coco_panoptic import read_coco_panoptic
    from vloss.eval.pq import pq_compute
    from vloss.eval.pq_synthetic import write_synthetic_dataset

    img, png = _panoptic_files(tmp_path)
    png_file = str((png / "1.png").resolve())  # the reader resolves its folders
    for segments, height, needles in (
            ([1], 6, ("field 'segments_info'", "PNG contains segment ids [2] not listed in segments_info")),
            ([1, 2, 3], 6, ("field 'segments_info'", "segment ids [3] listed in segments_info are missing")),
            ([1, 2], 7, ("field 'height/width'", "PNG is 8x6 but the JSON says 8x7"))):
        path = _json(tmp_path / "pan.json", _panoptic(segments, height))
        read_coco_panoptic(path, img, png)  # the JSON alone is fine; the PNGs are checked on request
        _raises(DataFormatError, lambda: read_coco_panoptic(path, img, png, check_pngs=True), png_file,
                "[image id 1]", *needles)
    path = _json(tmp_path / "pan.json", _panoptic([1, 2, 3]))
    sources, _ = panoptic_sources(str(path), str(img), str(png))
    _raises(ValueError, lambda: build_rows(sources, "panoptic", "coco_panoptic"), str(png / "1.png"),
            "segment id 3 listed in the JSON is absent from the PNG")
    paths = write_synthetic_dataset(tmp_path / "pq", num_images=2, height=8, width=10, seed=3)
    pred = json.loads(paths["pred_json"].read_text())
    dropped = pred["annotations"][1]["segments_info"].pop(0)["id"]
    paths["pred_json"].write_text(json.dumps(pred))
    _raises(DataFormatError, lambda: pq_compute(paths["gt_json"], paths["gt_dir"], paths["pred_json"],
                                                paths["pred_dir"], workers=1),
            "000001.png", "image_id=1", f"segment_id={dropped}", "in the PNG but not in the JSON")


def case_panoptic_png_json_mismatch_training_shards(tmp_path: Path, request) -> None:
    from pipelines.train.shards import build_rows
    from pipelines.train.sources import panoptic_sources

    img, png = _panoptic_files(tmp_path, image_height=7)
    for segments, height in (([1], 6), ([1, 2], 7)):  # segment 2 unlisted; PNG 8x6 but image and JSON 8x7
        path = _json(tmp_path / "pan.json", _panoptic(segments, height))
        sources, _ = panoptic_sources(str(path), str(img), str(png))
        _raises(ValueError, lambda: build_rows(sources, "panoptic", "coco_panoptic"), str(png / "1.png"))


CASES = [
    pytest.param(case_malformed_json, id="malformed-json"),
    pytest.param(case_truncated_json, id="truncated-json"),
    pytest.param(case_unknown_category, id="unknown-category"),
    pytest.param(case_degenerate_box, id="degenerate-box"),
    pytest.param(case_missing_image, id="missing-image"),
    pytest.param(case_corrupt_image, id="corrupt-image"),
    pytest.param(case_truncated_image, id="truncated-image"),
    pytest.param(case_grayscale_image, id="grayscale-image"),
    pytest.param(case_cmyk_image, id="cmyk-image"),
    pytest.param(case_16bit_image, id="16bit-image"),
    pytest.param(case_alpha_image, id="alpha-image"),
    pytest.param(case_huge_image, id="huge-image"),
    pytest.param(case_empty_annotations, id="empty-annotations"),
    pytest.param(case_empty_annotations_pseudo_masks, id="empty-annotations-pseudo-masks"),
    pytest.param(case_wrong_architecture_checkpoint, id="wrong-architecture-checkpoint"),
    pytest.param(case_non_checkpoint_file, id="non-checkpoint-file"),
    pytest.param(case_code_running_pickle, id="code-running-pickle"),
    pytest.param(case_unknown_set_key, id="unknown-set-key"),
    pytest.param(case_unknown_set_key_cluster, id="unknown-set-key-cluster"),
    pytest.param(case_wrong_set_type, id="wrong-set-type"),
    pytest.param(case_unknown_task, id="unknown-task"),
    pytest.param(case_results_unknown_image_id, id="results-unknown-image-id"),
    pytest.param(case_panoptic_png_json_mismatch, id="panoptic-png-json-mismatch"),
    pytest.param(case_panoptic_png_json_mismatch_training_shards, id="panoptic-png-json-mismatch-training-shards"),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, tmp_path, request):
    case(tmp_path, request)


def test_every_row_of_the_catalogue_has_its_case():
    """docs/ERRORS.md names ``test_bad_input[ID]`` in each row; the ids are exactly the cases here."""
    documented = re.findall(r"`test_bad_input\[([\w-]+)\]`", CATALOGUE.read_text())
    assert sorted(documented) == sorted(p.id for p in CASES)
    assert len(documented) == len(set(documented))


def test_every_test_the_catalogue_names_exists():
    """Rows that name a test elsewhere (``tests/PATH.py::NAME`` or ``tests/PATH.py``) name one that exists."""
    refs = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", CATALOGUE.read_text())
    assert refs
    for path, name in refs:
        source = (REPO / path).read_text()
        assert not name or re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} named in ERRORS.md"
