"""``bench/gpu_bundle.py``: the bundle for the lent GPU machine fits what travels and gives a
Python 3.12 without Ray a working Ray (core, Train, Data): a local cluster starts, a Ray Data
pipeline computes and a Ray Train run reports, from the trimmed archive alone."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_bundle.py"
# what the device image already has and Ray needs (docs/PERFORMANCE.md); torch is left out, so
# the check stops short of ray.train.torch, which the GPU run itself covers
DEVICE_LIKE = ["numpy", "pandas", "pyarrow", "fsspec", "aiohttp", "click", "filelock", "msgpack", "protobuf",
               "pyyaml", "requests", "packaging", "grpcio", "psutil"]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_bundle", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = _load()


def _python312() -> str | None:
    """A CPython 3.12 interpreter on this machine (pyenv's 3.12.1 here), or None."""
    env = dict(os.environ, PYENV_VERSION="3.12.1")
    for exe in ("python3.12",):
        path = shutil.which(exe)
        if path:
            proc = subprocess.run([path, "-c", "import sys; print(sys.version_info[:2])"], env=env,
                                  capture_output=True, text=True)
            if proc.returncode == 0 and proc.stdout.strip() == "(3, 12)":
                return path
    return None


def test_trim_keeps_executables_and_drops_the_named_parts(tmp_path: Path) -> None:
    wheel = tmp_path / "ray-9.9.9-cp312-cp312-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, mode in (("ray/__init__.py", 0o644), ("ray/core/src/ray/raylet/raylet", 0o755),
                           ("ray/jars/ray_dist.jar", 0o644), ("ray/rllib/x.py", 0o644),
                           ("ray/serve_helpers.py", 0o644), ("ray-9.9.9.dist-info/METADATA", 0o644)):
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"x")
    archive = bundle.trimmed_ray(wheel, tmp_path)
    assert archive.name == "ray-9.9.9-cp312.tar.xz"
    with tarfile.open(archive) as tar:
        members = {m.name: m.mode for m in tar.getmembers()}
    # ray/serve is trimmed, ray/serve_helpers.py is not (prefix match on whole path parts)
    assert sorted(members) == ["ray-9.9.9.dist-info/METADATA", "ray/__init__.py", "ray/core/src/ray/raylet/raylet",
                               "ray/serve_helpers.py"]
    assert members["ray/core/src/ray/raylet/raylet"] == 0o755


@pytest.mark.slow
def test_bundle_fits_and_runs_ray_on_python312(tmp_path: Path) -> None:
    py312 = _python312()
    if py312 is None:
        pytest.skip("no CPython 3.12 here (pyenv 3.12.1 is the device's stand-in)")
    out = tmp_path / "bundle"
    info = bundle.build(out, "3.12")
    assert info["total_mib"] <= bundle.LIMIT_MIB, info
    assert json.loads((out / "bundle.json").read_text()) == info
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    assert abs(size - info["total_mib"]) < 0.1

    # a Python 3.12 with the device's packages and no Ray; the bundle unpacked as gpu_run.sh does
    env = dict(os.environ, PYENV_VERSION="3.12.1")
    env.pop("PYTHONPATH", None)
    env.pop("RAY_ADDRESS", None)
    venv = tmp_path / "venv"
    subprocess.run([py312, "-m", "venv", str(venv)], env=env, check=True)
    vpy = str(venv / "bin" / "python")
    subprocess.run([vpy, "-m", "pip", "install", "-q", *DEVICE_LIKE], env=env, check=True, capture_output=True)
    assert subprocess.run([vpy, "-c", "import ray"], env=env, capture_output=True).returncode != 0
    site = tmp_path / "site"
    site.mkdir()
    (archive,) = out.glob("ray-*.tar.xz")
    with tarfile.open(archive) as tar:
        tar.extractall(site, filter="tar")
    subprocess.run([vpy, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    *map(str, sorted((out / "wheels").glob("*.whl")))], env=env, check=True, capture_output=True)
    code = """
import ray, ray.train, ray.data
from ray.train import RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
total = ray.data.range(100).map_batches(lambda b: {"id": b["id"] * 2}).sum("id")
def loop(cfg):
    import ray.train
    ray.train.report({"x": 7})
res = DataParallelTrainer(loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
                          run_config=RunConfig(storage_path=%r, name="t")).fit()
print("RESULT", ray.__version__, total, res.error is None)
""" % str(tmp_path / "ray_results")
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([vpy, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"RESULT {bundle.RAY_VERSION} 9900 True" in proc.stdout
