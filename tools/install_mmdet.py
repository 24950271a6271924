"""Install the MMDetection teacher's stack into this Python: mmengine, mmcv with its compiled ops, mmdet.

``make install-mmdet`` runs this with the project's ``.venv`` Python (issue #23). The versions are
pinned: mmdet 3.3.0 needs mmcv >= 2.0.0rc4, < 2.2.0, and mmcv publishes no wheel for torch 2.14, so
mmcv 2.1.0 is compiled here from its source distribution (sha256 checked), with the full ops
(``MMCV_WITH_OPS=1``; Mask R-CNN's RoIAlign and NMS live there, which mmcv-lite lacks). One patch
is applied to its source: the ``-std=c++17`` compile flag becomes ``-std=c++20``, which torch 2.14's
headers need.

The built wheel is kept in a per-machine cache outside the checkout,
``$VLOSS_WHEEL_CACHE`` (default ``~/.cache/vloss/wheels``), under a name that carries the Python,
torch and mmcv versions and the ops' device (``cpu``, or ``cuda`` with ``VLOSS_MMCV_CUDA=1`` and a
CUDA compiler), so a second run installs it in seconds. About 12 minutes on 2 cores for the CPU
ops; the CUDA ops take far longer and are only built when asked for.

    .venv/bin/python tools/install_mmdet.py [--rebuild] [--check] [--build-tools] [--build-only [--jobs N]]

``make test`` (``tools/test.sh``) installs the build tools first, compiles the wheel in the
background at the lowest CPU priority with ``--build-only`` while the rest of the suite runs (the
suite leaves a core idle about half of the time), then installs it and runs the MMDetection tests.

Exit status 0 when ``import mmdet`` and mmcv's RoIAlign work afterwards; otherwise one line saying
what failed (and the build log's path) and exit status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

MMCV = "2.1.0"
MMCV_SDIST = ("https://files.pythonhosted.org/packages/a7/19/f97f0fd4d432113a232e75f965335be6b7bb6557ae9faf8051e9a012cadd/"
              "mmcv-2.1.0.tar.gz")
MMCV_SHA256 = "d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f"
MMENGINE = "0.10.7"
MMDET = "3.3.0"
# what the build itself needs in this Python (mmcv builds with --no-build-isolation against the installed torch)
BUILD_TOOLS = ("ninja", "setuptools>=77,<81", "wheel")
# mmcv's and mmdet's own run-time dependencies, installed from the index (mmcv's wheel is installed --no-deps)
RUNTIME = (f"mmengine=={MMENGINE}", f"mmdet=={MMDET}", "addict", "yapf", "opencv-python>=3", "packaging", "Pillow",
           "pyyaml", "shapely", "terminaltables", "pycocotools", "scipy", "tqdm")


def cache_dir() -> Path:
    """The per-machine wheel cache (``$VLOSS_WHEEL_CACHE`` or ``~/.cache/vloss/wheels``)."""
    return Path(os.environ.get("VLOSS_WHEEL_CACHE") or Path.home() / ".cache" / "vloss" / "wheels")


def build_key(python: str, torch_version: str, device: str) -> str:
    """The cache folder's name for one build: ``mmcv-2.1.0-py3.12-torch2.14.1+cu130-cpu``."""
    return f"mmcv-{MMCV}-py{python}-torch{torch_version}-{device}"


def patch_source(src: Path) -> int:
    """Apply the repository's one patch to mmcv's unpacked source; returns the flags replaced.

    Raises:
        RuntimeError: the flag is not where it is expected (another mmcv source than the pinned one).
    """
    setup = src / "setup.py"
    text = setup.read_text()
    count = text.count("-std=c++17")
    if count == 0 and "-std=c++20" not in text:
        raise RuntimeError(f"{setup}: no '-std=c++17' flag to patch; is this mmcv {MMCV}?")
    setup.write_text(text.replace("-std=c++17", "-std=c++20"))
    return count


def _pip(*args: str, log=None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True,
                   stdout=log, stderr=subprocess.STDOUT if log else None)


def _download(url: str, sha256: str, dest: Path) -> Path:
    path = dest / url.rsplit("/", 1)[1]
    with urllib.request.urlopen(url, timeout=120) as r, open(path, "wb") as f:
        shutil.copyfileobj(r, f)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{url}: sha256 {digest}, expected {sha256}")
    return path


def build_wheel(target: Path, device: str, log_path: Path, jobs: int = 0) -> Path:
    """Download, patch and compile mmcv into ``target`` (a wheel file there); returns the wheel's path.

    ``jobs``: parallel compile jobs (0: one per CPU). The build tools are installed into this Python
    first, a no-op where ``--build-tools`` already did (then nothing in it changes during the build)."""
    with tempfile.TemporaryDirectory(prefix="vloss-mmcv-") as tmp, open(log_path, "w") as log:
        work = Path(tmp)
        _pip(*BUILD_TOOLS, log=log)
        sdist = _download(MMCV_SDIST, MMCV_SHA256, work)
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        src = work / f"mmcv-{MMCV}"
        print(f"[install-mmdet] patched {patch_source(src)} compile flag(s) -std=c++17 -> -std=c++20 in {src.name}"
              f"/setup.py", flush=True)
        env = {**os.environ, "MMCV_WITH_OPS": "1", "FORCE_CUDA": "1" if device == "cuda" else "0",
               "MAX_JOBS": str(jobs or os.cpu_count() or 2)}
        if device == "cpu":
            env["CUDA_HOME"] = ""  # a CUDA toolkit on the machine must not turn the CPU build into a CUDA one
        dist = work / "dist"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(dist),
                        str(src)], check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
        wheels = list(dist.glob("mmcv-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"the build left {len(wheels)} wheels in {dist}")
        target.mkdir(parents=True, exist_ok=True)
        partial = target / (wheels[0].name + ".partial")
        shutil.copyfile(wheels[0], partial)
        os.replace(partial, target / wheels[0].name)  # a cache entry is complete or absent
        return target / wheels[0].name


def check() -> str:
    """Import mmdet and run mmcv's compiled RoIAlign once; returns the versions found."""
    code = ("import torch, mmcv, mmengine, mmdet\nfrom mmcv.ops import RoIAlign\n"
            "out = RoIAlign((2, 2), 1.0, 0)(torch.ones(1, 1, 4, 4), torch.tensor([[0., 0., 0., 3., 3.]]))\n"
            "assert out.shape == (1, 1, 2, 2) and abs(float(out.mean()) - 1) < 1e-6\n"
            "print(f'mmcv {mmcv.__version__} (ops), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("the installed stack does not work: " + (r.stderr.strip().splitlines() or ["?"])[-1])
    return r.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/install_mmdet.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rebuild", action="store_true", help="compile mmcv again even when the cache has it")
    p.add_argument("--check", action="store_true", help="only check the installed stack")
    p.add_argument("--build-tools", action="store_true", help="only install what the build needs (seconds)")
    p.add_argument("--build-only", action="store_true",
                   help="only compile the wheel into the cache (when it is not there); install nothing else")
    p.add_argument("--jobs", type=int, default=0, help="parallel compile jobs (default: one per CPU)")
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        if a.check:
            print(f"[install-mmdet] {check()}")
            return 0
        if a.build_tools:
            _pip(*BUILD_TOOLS)
            print(f"[install-mmdet] build tools installed: {', '.join(BUILD_TOOLS)}", flush=True)
            return 0
        import torch

        device = "cuda" if os.environ.get("VLOSS_MMCV_CUDA") == "1" else "cpu"
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        target = cache_dir() / build_key(python, torch.__version__, device)
        cached = sorted(target.glob("mmcv-*.whl"))
        if cached and not a.rebuild:
            wheel = cached[-1]
            print(f"[install-mmdet] mmcv {MMCV} from the cache: {wheel}", flush=True)
        else:
            log = cache_dir() / f"{target.name}.build.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"[install-mmdet] compiling mmcv {MMCV} with its {device} ops for Python {python}, torch "
                  f"{torch.__version__} (about 12 minutes on 2 cores); log: {log}", flush=True)
            try:
                wheel = build_wheel(target, device, log, a.jobs)
            except subprocess.CalledProcessError as exc:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                raise RuntimeError(f"building mmcv failed (exit {exc.returncode}): {' '.join(tail)}; "
                                   f"the whole log: {log}") from exc
            print(f"[install-mmdet] built {wheel.name} in {time.time() - t0:.0f} s; cached in {target}", flush=True)
        if a.build_only:
            return 0
        _pip("--no-deps", str(wheel))
        _pip(*RUNTIME)
        print(f"[install-mmdet] {check()}; {time.time() - t0:.0f} s", flush=True)
        return 0
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"tools/install_mmdet.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
