"""``python -m vloss predict``: segment images with any vocabulary and write overlays and standard files.

Per image ``STEM`` (the file's name without extension; numbered when two inputs share a stem):

* ``OUT/STEM.overlay.png``: segments tinted, outlined and labelled with class name and score;
* panoptic: ``OUT/STEM.panoptic.png`` (COCO panoptic ids, ``R + 256 G + 256^2 B``) and
  ``OUT/STEM.json`` (``segments_info`` with names); instance: ``OUT/STEM.json`` (RLE masks, boxes,
  scores, names); semantic: ``OUT/STEM.semantic.png`` (16-bit class index + 1) and ``OUT/STEM.json``
  (the legend). Category ids are the vocabulary's order from 1 (``OUT/vocabulary.json``).

And for the whole run: ``OUT/predictions.json`` in COCO format (panoptic: ``images``,
``annotations`` with ``segments_info``, ``categories``; instance: ``images``, ``categories`` and
``OUT/results.json``, a COCO results list), ``OUT/errors.json`` (images that could not be read or
predicted, with reasons; they are reported and skipped) and ``OUT/vocabulary.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

from vloss.data.images import IMAGE_SUFFIXES

# bytes of memory one input pixel may cost: the paper network's forward took 0.67-0.69 KB per
# input pixel (fp32, CPU, 512^2 and 1024^2 inputs, peak RSS), and the 100 query masks upsampled for
# post-processing take 0.4 KB more; 2 KB leaves headroom. --size is capped so that a square input of
# that side fits in the memory this machine has free (the --size 100000 run grew to 24 GB)
BYTES_PER_INPUT_PIXEL = 2048


def max_size(available_bytes: int | None = None) -> int:
    """The largest ``--size`` whose square input fits in memory (at least 512)."""
    if available_bytes is None:
        try:
            available_bytes = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available_bytes = 8 << 30
    return max(512, int((available_bytes / BYTES_PER_INPUT_PIXEL) ** 0.5) // 32 * 32)


def expand_inputs(items: list[str], skipped: list[dict] | None = None) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths.

    Args:
        items: what the user named.
        skipped: receives ``{"image", "reason"}`` for every file of a named folder that is not
            read: not an image by its suffix, or a symlink leading outside the folder.

    Raises:
        FileNotFoundError: an item that is none of these (names it).
    """
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            root = p.resolve()
            for q in sorted(p.iterdir()):
                if not q.is_file():
                    continue
                if q.suffix.lower() not in IMAGE_SUFFIXES:
                    reason = f"not read: {q.suffix or 'no suffix'} is not an image type ({' '.join(IMAGE_SUFFIXES)})"
                elif not q.resolve().is_relative_to(root):
                    reason = f"not read: a symlink leading outside {p} (to {q.resolve()})"
                else:
                    out.append(q)
                    continue
                if skipped is not None:
                    skipped.append({"image": str(q), "reason": reason})
        elif p.is_file():
            out.append(p)
        elif any(ch in item for ch in "*?["):
            matched = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matched:
                raise FileNotFoundError(f"{item}: the pattern matches no file")
            out += matched
        else:
            raise FileNotFoundError(f"{item}: no such file, folder or pattern")
    if not out:
        raise FileNotFoundError(f"no images in {' '.join(items)}")
    return out


def _stems(paths: list[Path]) -> list[str]:
    """Output names per input: the stem, numbered when taken (never equal to another's, also when
    an input's own stem looks numbered: ``x.png``, ``x.jpg``, ``x_1.jpg``)."""
    taken: set[str] = set()
    stems = []
    for p in paths:
        stem, n = p.stem, 0
        while stem.lower() in taken:
            n += 1
            stem = f"{p.stem}_{n}"
        taken.add(stem.lower())
        stems.append(stem)
    return stems


def write_outputs(pred, image, out: Path, stem: str) -> list[str]:
    """Write one image's overlay and files; returns their names."""
    files = [f"{stem}.overlay.png"]
    pred.draw(image).save(out / files[0])
    if pred.task in ("panoptic", "semantic"):
        files.append(f"{stem}.{pred.task}.png")
        (out / files[-1]).write_bytes(pred.id_png())
    files.append(f"{stem}.json")
    record = pred.to_json()
    if pred.task == "panoptic":
        record["file_name"] = f"{stem}.panoptic.png"
    (out / files[-1]).write_text(json.dumps(record) + "\n")
    return files


def _predict_chunk(predictor, paths: list[Path]) -> list[Any]:
    """Predictions for ``paths`` in one batch; an image that cannot be read or predicted gives its
    reason (a string) instead, and the others are still predicted."""
    from vloss.data.images import read_image

    arrays: list[Any] = []
    for path in paths:
        try:
            arrays.append(read_image(path))
        except (OSError, ValueError) as exc:
            arrays.append(f"{type(exc).__name__}: {exc}")
    ok = [k for k, a in enumerate(arrays) if not isinstance(a, str)]
    try:
        preds = predictor([arrays[k] for k in ok]) if ok else []
    except Exception:  # isolate the image that fails instead of losing the batch
        preds = []
        for k in ok:
            try:
                preds.append(predictor(arrays[k]))
            except Exception as exc:
                preds.append(f"prediction failed: {type(exc).__name__}: {exc}")
    out = list(arrays)
    for k, pred in zip(ok, preds):
        if not isinstance(pred, str):
            pred.source = str(paths[k])
        out[k] = pred
    return out


def read_vocabulary(args: argparse.Namespace):
    """The :class:`vloss.inference.predictor.Vocabulary` of ``--vocab-file`` or ``--things``/``--stuff``."""
    from vloss.inference.predictor import Vocabulary

    if args.vocab_file:
        return Vocabulary.from_file(args.vocab_file)
    return Vocabulary.from_lists(name_list(args.things), name_list(args.stuff))


def run_predict(args: argparse.Namespace) -> int:
    """The command's body; returns the exit status."""
    from vloss.inference.predictor import Predictor
    from vloss.progress import ProgressLine

    check_arguments(args)
    vocab = read_vocabulary(args)
    skipped: list[dict] = []
    paths = expand_inputs(args.images, skipped)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, preset=args.config,
                                          task=args.task, size=args.size, batch_size=args.batch_size,
                                          threshold=args.threshold, overlap_threshold=args.overlap_threshold,
                                          topk=args.topk)
    predictor.set_vocabulary(vocabulary=vocab)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocabulary.json").write_text(json.dumps(
        [{"id": k + 1, "name": n, "isthing": t} for k, (n, t) in enumerate(zip(vocab.names, vocab.isthing))], indent=1))
    stems = _stems(paths)
    line = ProgressLine("predict", len(paths), unit="img")
    images, annotations, results, failed = [], [], [], list(skipped)
    for start in range(0, len(paths), args.batch_size):
        chunk = list(range(start, min(start + args.batch_size, len(paths))))
        for k, pred in zip(chunk, _predict_chunk(predictor, [paths[k] for k in chunk])):
            path, stem = paths[k], stems[k]
            if isinstance(pred, str):  # unreadable / corrupt image: reported and skipped
                failed.append({"image": str(path), "reason": pred})
                continue
            try:
                write_outputs(pred, path, out, stem)
            except OSError as exc:
                failed.append({"image": str(path), "reason": f"writing the outputs failed: {exc}"})
                continue
            images.append({"id": k + 1, "file_name": path.name, "height": pred.height, "width": pred.width})
            if pred.task == "panoptic":
                annotations.append({"image_id": k + 1, "file_name": f"{stem}.panoptic.png",
                                    "segments_info": pred.to_json()["segments_info"]})
            elif pred.task == "instance":
                results += [{"image_id": k + 1, **{key: d[key] for key in ("category_id", "segmentation", "score",
                                                                             "bbox")}}
                            for d in pred.to_json()["detections"]]
        line.update(len(chunk), postfix=f"{len(failed)} failed" if failed else "")
    line.close()
    categories = [{"id": k + 1, "name": n, "isthing": int(t)}
                  for k, (n, t) in enumerate(zip(vocab.names, vocab.isthing))]
    coco: dict[str, Any] = {"images": images, "categories": categories}
    if args.task == "panoptic":
        coco["annotations"] = annotations
    if args.task == "instance":
        (out / "results.json").write_text(json.dumps(results) + "\n")
    (out / "predictions.json").write_text(json.dumps(coco) + "\n")
    (out / "errors.json").write_text(json.dumps(failed, indent=1) + "\n")
    print(f"[predict] {len(images)}/{len(paths)} images segmented into {out} "
          f"({len(vocab.names)} classes, task {args.task})"
          + (f"; {len(skipped)} other file(s) not read (errors.json)" if skipped else ""))
    for f in failed[:10]:
        print(f"[predict] skipped {f['image']}: {f['reason']}", file=sys.stderr)
    return 0 if images or not paths else 1


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse settings that cannot work before any model is loaded (names the flag)."""
    import math

    for flag, value in (("--threshold", args.threshold), ("--overlap-threshold", args.overlap_threshold)):
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{flag} must be in [0, 1], got {value}")
    if args.topk < 1 or args.batch_size < 1:
        raise ValueError(f"--topk and --batch-size must be >= 1, got {args.topk} and {args.batch_size}")
    if args.size is not None:
        cap = max_size()
        if not 32 <= args.size <= cap:
            raise ValueError(f"--size {args.size} is outside [32, {cap}]: {cap} is the largest square input "
                             f"whose activations fit in this machine's free memory")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model and vocabulary arguments that :func:`read_vocabulary` and the predictor read
    (shared by ``predict`` and ``export``)."""
    p.add_argument("--checkpoint", required=True, help="training checkpoint directory or weights file")
    p.add_argument("--config", default=None, choices=["tiny", "paper", "baseline"],
                   help="preset for a weights file that stores no config")
    add_vocabulary_arguments(p)


def add_vocabulary_arguments(p: argparse.ArgumentParser) -> None:
    """``--things``/``--stuff`` or ``--vocab-file``: the same flags wherever a vocabulary is taken
    (``vloss predict``, ``vloss export``, ``python -m jobs.predict``); :func:`name_list` splits them."""
    p.add_argument("--things", default=None, help='comma-separated thing classes, e.g. "red car,dog"')
    p.add_argument("--stuff", default=None, help='comma-separated stuff classes, e.g. "sky,road"')
    p.add_argument("--vocab-file", default=None,
                   help="one name per line (prefix thing: or stuff:), or a JSON list of {name, isthing}")


def check_one_vocabulary(vocab_file: str | None, things: Any, stuff: Any) -> None:
    """The classes come from ``--things``/``--stuff`` or from ``--vocab-file``, exactly one of the two.

    Raises:
        ValueError: both or neither given.
    """
    if bool(vocab_file) == bool(things or stuff):
        raise ValueError("give the classes with --things/--stuff or with --vocab-file (one of the two)")


def name_list(text: str | None) -> list[str]:
    """The names of a comma-separated ``--things``/``--stuff`` value (empty parts dropped)."""
    return [n for n in (text or "").split(",") if n.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``predict`` sub-command's arguments."""
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    add_model_arguments(p)
    p.add_argument("--task", choices=["panoptic", "instance", "semantic"], default="panoptic")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--size", type=int, default=None, help="shorter side of the input (default: the training size)")
    p.add_argument("--threshold", type=float, default=None,
                   help="panoptic: min class probability of a segment (default 0.8); instance: min score")
    p.add_argument("--overlap-threshold", type=float, default=0.8,
                   help="panoptic: share of its mask a segment must keep after overlaps are resolved")
    p.add_argument("--topk", type=int, default=100, help="instance: detections per image")


def main(argv: list[str] | None = None) -> int:
    """``python -m vloss predict ...``."""
    p = argparse.ArgumentParser(prog="python -m vloss predict", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        check_one_vocabulary(args.vocab_file, args.things, args.stuff)
    except ValueError as exc:
        p.error(str(exc))
    try:
        return run_predict(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m vloss predict: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

