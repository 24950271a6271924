"""``python -m vloss export``: the network with a vocabulary baked in, as an ONNX or TorchScript file.

Writes ``FILE`` and ``FILE.json`` (class names, thing flags, input size and normalisation, output
layout; see :mod:`vloss.inference.export`). The class names are cleaned and put in the prompt templates as
the checkpoint's config says, exactly as ``python -m vloss predict`` does, so an exported file
and the predictor give the same logits. Run the file with onnxruntime (or ``torch.jit.load``) and
post-process with :mod:`vloss.inference.postprocess_numpy` (NumPy only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_export(args: argparse.Namespace) -> int:
    """The command's body; returns the exit status."""
    import torch

    from vloss.inference.export import export_onnx, export_torchscript
    from vloss.inference.predict_cli import read_vocabulary
    from vloss.inference.predictor import Predictor

    vocab = read_vocabulary(args)
    height, width = args.size
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu", preset=args.config)
    predictor.set_vocabulary(vocabulary=vocab)
    embeds = predictor.class_embeddings.detach().to(torch.float32)  # [C, Dt]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    export = export_onnx if args.format == "onnx" else export_torchscript
    kwargs = {"opset": args.opset} if args.format == "onnx" else {}
    meta = export(predictor.model, embeds, out, height, width, names=vocab.names, is_thing=vocab.isthing, **kwargs)
    outputs = ", ".join(f"{o['name']} {o['shape']}" for o in meta["outputs"])
    print(f"[export] {args.format} file {out} ({out.stat().st_size / 2**20:.1f} MiB) + {out.name}.json: "
          f"{len(vocab.names)} classes, input [batch, 3, {height}, {width}], outputs {outputs}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``export`` sub-command's arguments."""
    from vloss.inference.predict_cli import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), required=True,
                   help="the fixed input height and width (multiples of the size divisor, 32)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16)")
    p.add_argument("--out", required=True, help="output file (its metadata goes to FILE.json)")


def main(argv: list[str] | None = None) -> int:
    """``python -m vloss export ...``."""
    p = argparse.ArgumentParser(prog="python -m vloss export", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    from vloss.inference.predict_cli import check_one_vocabulary

    try:
        check_one_vocabulary(args.vocab_file, args.things, args.stuff)
    except ValueError as exc:
        p.error(str(exc))
    if min(args.size) <= 0:
        p.error(f"--size must be positive, got {args.size[0]} {args.size[1]}")
    try:
        return run_export(args)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"python -m vloss export: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
