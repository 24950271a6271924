"""Settings are checked when they are set (issue #28 item 6): a value that cannot train is refused
by the config classes, so the dry run refuses what the run would, with the key as typed."""

from __future__ import annotations

import pytest

from jobs.train import main as train_main
from pipelines.train.config import ClusterConfig
from vloss.config import resolve
from vloss.config_io import apply_overrides
from vloss.recipes import RECIPES, build_recipe

BAD = [
    ("optim.base_lr=-0.001", "optim.base_lr must be a finite number > 0"),
    ("optim.text_lr=0", "optim.text_lr must be a finite number > 0"),
    ("optim.base_lr=inf", "optim.base_lr"),
    ("optim.gamma=-1", "optim.gamma must be a finite number > 0"),
    ("optim.betas=0.9,1.0", "optim.beta2 must be in [0, 1)"),
    ("train.log_every=0", "train.log_every must be an integer >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be an integer >= 1"),
    ("train.epochs=0", "train.epochs must be an integer >= 1"),
    ("train.dense_batch_size=-4", "train.dense_batch_size must be an integer >= 1, got -4"),
    ("train.caption_ratio=-0.5", "train.caption_ratio must be a finite number >= 0"),
    ("train.max_steps=-1", "train.max_steps must be an integer >= 0"),
    ("model.decoder.num_queries=0", "model.decoder.num_queries must be an integer >= 1"),
    ("model.decoder.num_heads=5", "model.decoder.num_heads=5 does not divide model.decoder.hidden_dim=64"),
    ("model.text.heads=3", "model.text.heads=3 does not divide model.text.width"),
    ("input.lsj_min_scale=3", "input.lsj_min_scale=3.0 is above input.lsj_max_scale"),
    ("input.dense_size=0", "input.dense_size must be an integer >= 32"),
]


@pytest.mark.parametrize("override,message", BAD)
def test_a_value_that_cannot_train_is_refused_naming_its_key(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        resolve("tiny", [override])


@pytest.mark.parametrize("override,message", [
    ("cpus_per_worker=-1", "cluster.cpus_per_worker must be a finite number > 0"),
    ("workers=0", "cluster.workers must be an integer >= 1"),
    ("gpus_per_worker=-1", "cluster.gpus_per_worker must be a finite number >= 0"),
    ("transform_cpus=0", "cluster.transform_cpus must be a finite number > 0"),
    ("verify_shards=some", "cluster.verify_shards must be 'fast' or 'full'"),
])
def test_cluster_settings_are_checked(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(ClusterConfig(), [override], prefix="cluster.")


def test_every_recipe_and_preset_passes_the_checks():
    for name in RECIPES:
        build_recipe(name)
        build_recipe(name, "tiny")
    for preset in ("paper", "baseline", "tiny"):
        resolve(preset)


def test_the_dry_run_refuses_what_the_run_would(tmp_path, capsys):
    code = None
    with pytest.raises(SystemExit) as info:
        code = train_main(["--dry-run", "--out", str(tmp_path / "r"), "--set", "optim.base_lr=-1"])
    assert info.value.code == 2 and code is None
    err = capsys.readouterr().err
    assert "optim.base_lr must be a finite number > 0" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
