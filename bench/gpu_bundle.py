"""Build what the lent GPU machine lacks to run ``bench/gpu_check.py`` whole, Ray included.

The device image (Python 3.12, torch, timm, pyarrow, pandas, grpcio, aiohttp, ...) has no Ray,
open_clip, ftfy, pycocotools or lvis and no package registry, and at most 64 MiB travel with the
working tree. The Ray 2.60 wheel is 76 MiB; without its Java jars, RLlib, Serve, the LLM library
and the dashboard's web client (none of which a job of this project imports) and packed as
``tar.xz`` it is about 31 MB. Everything else fits in a few MiB of wheels.

The bundle (``.gpu_bundle/`` by default; ignored by git, never committed)::

    ray-<version>-<tag>.tar.xz      the trimmed ray package and its dist-info
    wheels/*.whl                    the other missing packages, for the target Python
    bundle.json                     what is in it, sizes, the target Python

``bench/gpu_run.sh`` unpacks it on the device (``--target`` of a temporary folder on
``PYTHONPATH``) and runs every section of the GPU check. Usage::

    .venv/bin/python bench/gpu_bundle.py                    # cp312, the device's Python
    .venv/bin/python bench/gpu_bundle.py --python 3.11 --out /tmp/b311

Needs PyPI (``pip download``), as the rest of the set-up does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY_VERSION = "2.60.0"
# Parts of the ray package that no job of this project imports (checked by the bundle test,
# which imports ray, ray.train, ray.train.torch's dependencies and ray.data from the bundle).
RAY_TRIM = ("ray/jars", "ray/rllib", "ray/serve", "ray/llm", "ray/dashboard/client/build")
# What the device image lacks (docs/PERFORMANCE.md), pinned to the versions the project is tested
# with. Ray core needs jsonschema (with referencing, rpds-py, jsonschema-specifications); Ray Train
# needs pydantic and tensorboardX; the project needs open_clip (ftfy, wcwidth), pycocotools, lvis.
WHEELS = (
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "tensorboardX==2.6.5",
    "open_clip_torch==3.3.0",
    "ftfy==6.3.1",
    "wcwidth==0.9.4",
    "pycocotools==2.0.11",
    "lvis==0.5.3",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
LIMIT_MIB = 64.0


def pip_download(specs: list[str], python: str, dest: Path) -> None:
    """Download binary wheels of ``specs`` for CPython ``python`` on x86-64 Linux into ``dest``.

    Raises:
        SystemExit: pip failed (its output names the package).
    """
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    proc = subprocess.run(cmd + specs, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gpu_bundle: error: pip download failed for {specs}:\n{proc.stderr.strip()[-2000:]}")


def trimmed_ray(wheel: Path, out: Path) -> Path:
    """Pack the ray wheel without :data:`RAY_TRIM` as ``tar.xz`` (members ``ray/...`` and the dist-info).

    Args:
        wheel: the downloaded ray wheel.
        out: folder for the archive.

    Returns:
        The archive's path.
    """
    name = wheel.name.removesuffix(".whl").split("-")
    archive = out / f"ray-{name[1]}-{name[2]}.tar.xz"
    with zipfile.ZipFile(wheel) as zf, tarfile.open(archive, "w:xz", preset=6) as tar:
        for info in zf.infolist():
            if info.is_dir() or any(info.filename == p or info.filename.startswith(p + "/") for p in RAY_TRIM):
                continue
            ti = tarfile.TarInfo(info.filename)
            ti.size = info.file_size
            # executables (raylet, gcs_server) keep their mode bits from the zip's external attributes
            mode = (info.external_attr >> 16) & 0o777
            ti.mode = mode or 0o644
            ti.mtime = 0
            with zf.open(info) as src:
                tar.addfile(ti, src)
    return archive


def build(out: Path, python: str = "3.12") -> dict:
    """Build the bundle into ``out`` (replaced) and return its description (also ``bundle.json``)."""
    if out.exists():
        shutil.rmtree(out)
    (out / "wheels").mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip_download([f"ray=={RAY_VERSION}"], python, Path(tmp))
        (wheel,) = Path(tmp).glob("ray-*.whl")
        archive = trimmed_ray(wheel, out)
        ray_wheel_mib = wheel.stat().st_size / 2**20
    pip_download(list(WHEELS), python, out / "wheels")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files) / 2**20
    info = {"python": python, "ray": RAY_VERSION, "ray_wheel_mib": round(ray_wheel_mib, 1),
            "ray_archive_mib": round(archive.stat().st_size / 2**20, 1), "trimmed": list(RAY_TRIM),
            "wheels": sorted(p.name for p in (out / "wheels").glob("*.whl")), "total_mib": round(total, 1)}
    (out / "bundle.json").write_text(json.dumps(info, indent=1) + "\n")
    if total > LIMIT_MIB:
        raise SystemExit(f"gpu_bundle: error: the bundle is {total:.1f} MiB, over the {LIMIT_MIB:.0f} MiB that travel")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".gpu_bundle", help="bundle folder (replaced)")
    ap.add_argument("--python", default="3.12", help="target CPython version (the device's is 3.12)")
    args = ap.parse_args(argv)
    info = build(args.out, args.python)
    print(f"bundle {args.out}: ray {info['ray_wheel_mib']} MiB wheel -> {info['ray_archive_mib']} MiB trimmed, "
          f"{len(info['wheels'])} wheels, {info['total_mib']} MiB in all (limit {LIMIT_MIB:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
