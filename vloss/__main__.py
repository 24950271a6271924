"""``python -m vloss {predict,export} ...``: use a trained model.

* ``predict``: segment images (files, folders, globs) with any vocabulary; overlays and COCO-format
  files (:mod:`vloss.inference.predict_cli`).
* ``export``: the network with a vocabulary baked in, as ONNX or TorchScript (:mod:`vloss.inference.export_cli`).
"""

from __future__ import annotations

import sys

COMMANDS = {"predict": "vloss.inference.predict_cli", "export": "vloss.inference.export_cli"}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"python -m vloss: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
