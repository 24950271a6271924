"""One command-line convention for every job (issue #25 item 7): ``--help`` without torch or Ray,
``--help-settings`` listing every ``--set`` key with type and default, an unknown key refused in
one line with the closest known key, one log folder name."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOBS = ("train", "evaluate", "predict", "pseudo_masks", "pretrain")


@pytest.mark.parametrize("job", JOBS)
def test_help_imports_neither_torch_nor_ray(job):
    probe = (f"import sys\nfrom jobs.{job} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
             f"    assert e.code == 0\nheavy = sorted(m for m in ('torch', 'ray', 'torchvision') if m in sys.modules)\n"
             f"print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout[-500:]


def _settings(job: str, capsys) -> list[str]:
    import importlib

    main = importlib.import_module(f"jobs.{job}").main
    with pytest.raises(SystemExit) as exc:
        main(["--help-settings"])
    assert exc.value.code == 0
    return capsys.readouterr().out.splitlines()


def test_help_settings_lists_every_key_with_type_and_default(capsys):
    from pipelines.train.config import ClusterConfig
    from vloss.config import TrainJobConfig
    from vloss.config_io import setting_keys

    lines = _settings("train", capsys)
    keys = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert set(keys) == set(setting_keys(TrainJobConfig)) | {f"cluster.{k}" for k in setting_keys(ClusterConfig)}
    assert keys["optim.base_lr"] == ["float", str(TrainJobConfig().optim.base_lr)]
    assert keys["cluster.storage_path"] == ["str", "|", "None", "None"]
    assert keys["model.text.templates"][0] == "tuple[str,"  # "tuple[str, ...]"
    for job in JOBS[1:]:
        rows = _settings(job, capsys)
        assert rows[0].startswith(f"--set keys of python -m jobs.{job}") and len(rows) > 10, rows


def test_pseudo_mask_settings_are_the_config_fields(capsys):
    from pipelines.common.actor_pool import ActorPoolConfig
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from vloss.teacher.config import TeacherConfig

    listed = [line.split()[0] for line in _settings("pseudo_masks", capsys)[1:]]
    own = [f.name for f in dataclasses.fields(PseudoMaskJobConfig) if f.name not in ("teacher", "pool")]
    assert sorted(listed) == sorted(own + [f"teacher.{f.name}" for f in dataclasses.fields(TeacherConfig)]
                                    + [f"pool.{f.name}" for f in dataclasses.fields(ActorPoolConfig)])
    assert "annotations" in listed


@pytest.mark.parametrize("argv, typed, closest", [
    (["--set", "train.base_lr=1e-4"], "train.base_lr", "optim.base_lr"),   # the same name in another section
    (["--set", "optim.base_lrr=1e-4"], "optim.base_lrr", "optim.base_lr"),  # a typo
    (["--set", "cluster.worker=4"], "cluster.worker", "cluster.workers"),
])
def test_an_unknown_key_is_one_line_with_the_closest_key(argv, typed, closest, capsys):
    from jobs.train import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err  # no usage block
    assert err[0].startswith("python -m jobs.train: error: ")
    assert f"unknown key {typed!r}" in err[0] and err[0].endswith(f"(did you mean {closest!r}?)"), err[0]


def test_every_job_logs_to_one_folder_name():
    from pipelines.common.cli import LOG_FOLDER, local_log_dir

    assert local_log_dir("/x/out") == f"/x/out/{LOG_FOLDER}" == "/x/out/_logs"
    drivers = {"train": "pipelines/train/launch.py"}  # a thin entry point: its driver sets the output up
    for job in JOBS:
        text = (ROOT / drivers.get(job, f"jobs/{job}.py")).read_text()
        assert "setup_output(" in text and "name=" not in text.split("setup_output(", 1)[1].split(")", 1)[0], job


def test_the_same_vocabulary_flags_wherever_a_vocabulary_is_taken(tmp_path, capsys):
    import argparse

    from jobs.predict import parse_args
    from vloss.inference.export_cli import add_arguments as export_arguments
    from vloss.inference.predict_cli import add_arguments as predict_arguments

    for add in (predict_arguments, export_arguments):
        p = argparse.ArgumentParser()
        add(p)
        assert {"--things", "--stuff", "--vocab-file"} <= set(p._option_string_actions), add
    base = ["--images", str(tmp_path), "--checkpoint", "c", "--out", str(tmp_path / "o")]
    cfg, _ = parse_args(base + ["--things", "red car, dog", "--stuff", "sky"])
    assert (cfg.things, cfg.stuff, cfg.vocab_file) == (("red car", " dog"), ("sky",), None)
    for bad in ([], ["--things", "dog", "--vocab-file", "v.txt"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(base + bad)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and "--things/--stuff or with --vocab-file" in err[0], err
