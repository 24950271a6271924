"""Checks of cluster.yaml: parsed with PyYAML and validated by Ray's own launcher schema and
config preparation (the code `ray up` runs before it touches the cloud)."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def _pin(commands: list[str], package: str) -> str | None:
    """Version pinned for `package` (e.g. "torch", "ray[...]") in pip install commands."""
    pattern = re.compile(rf'"{re.escape(package)}(\[[^\]]*\])?==([^"]+)"')
    for cmd in commands:
        m = pattern.search(cmd)
        if m:
            return m.group(2)
    return None


def test_required_keys_and_aws_provider(cluster):
    for key in ("cluster_name", "provider", "max_workers", "idle_timeout_minutes",
                "available_node_types", "head_node_type", "setup_commands", "file_mounts",
                "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cluster, key
    assert cluster["provider"]["type"] == "aws" and cluster["provider"]["region"]
    assert cluster["head_node_type"] in cluster["available_node_types"]


def test_validates_against_rays_launcher_schema(cluster):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(cluster, schema)
    # Ray's own pipeline: merge with the AWS defaults, then validate (as `ray up` does)
    validate_config(prepare_config(copy.deepcopy(cluster)))
    # the schema is strict enough to catch a typo in a node type
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["worker.gpu.a10g"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_ray_torch_and_image_pinned_to_the_installed_versions(cluster):
    setup = cluster["setup_commands"]
    assert _pin(setup, "ray") == ray.__version__ == metadata.version("ray")
    assert "ray[default,train,data]" in " ".join(setup)
    assert f":{ray.__version__}-" in cluster["docker"]["image"]
    # torch pins match pyproject.toml (the project's single source of the torch pin)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pyproject_pins = dict(d.split("==") for d in deps if d.startswith(("torch==", "torchvision==")))
    assert _pin(setup, "torch") == pyproject_pins["torch"]
    assert _pin(setup, "torchvision") == pyproject_pins["torchvision"]
    assert _pin(setup, "torch") == metadata.version("torch").split("+")[0]


def test_setup_installs_torch_first_then_ray_then_the_synced_project(cluster):
    setup = cluster["setup_commands"]
    i_torch = next(i for i, c in enumerate(setup) if '"torch==' in c)
    i_ray = next(i for i, c in enumerate(setup) if '"ray[' in c)
    i_proj = next(i for i, c in enumerate(setup) if "pip install" in c and "-e ." in c)
    assert i_torch < i_ray < i_proj
    remote = next(r for r, local in cluster["file_mounts"].items() if local == ".")
    assert setup[i_proj].startswith(f"cd {remote} ")


def test_dashboard_bound_to_loopback_only(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--head" in head
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1\b", head)
    everything = yaml.safe_dump(cluster)
    assert "0.0.0.0" not in everything


def test_autoscaling_gpu_worker_type(cluster):
    types = cluster["available_node_types"]
    gpu = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu, "no GPU worker type"
    for name, t in gpu.items():
        assert name != cluster["head_node_type"]
        assert t.get("min_workers", 0) == 0 and t["max_workers"] > 0
        assert t["max_workers"] <= cluster["max_workers"]
    assert types[cluster["head_node_type"]]["resources"].get("GPU", 0) == 0


def test_no_secrets(cluster):
    text = (REPO / "cluster.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # AWS access key ids
    assert "aws_secret_access_key" not in text.lower()
    assert "ssh_private_key" not in cluster.get("auth", {})
