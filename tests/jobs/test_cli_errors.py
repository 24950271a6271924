"""Every job refuses an unknown --set key, before any work (issue #15, defect 7)."""

from __future__ import annotations

import pytest


def test_evaluation_refuses_unknown_keys_of_its_own_and_of_the_checkpoints_config(tmp_path, capsys,
                                                                                  tiny_checkpoint_dir,
                                                                                  synthetic_world):
    from jobs.evaluate import main

    base = ["--task", "lvis", "--checkpoint", str(tiny_checkpoint_dir), "--out", str(tmp_path / "e"),
            "--data", str(synthetic_world)]
    with pytest.raises(SystemExit) as exc:
        main(base + ["--set", "nosuch.key=1"])
    assert exc.value.code == 2 and "unknown key 'nosuch'" in capsys.readouterr().err
    assert main(base + ["--set", "model.nosuch=1"]) == 2  # refused when the checkpoint's config is resolved
    assert "unknown key 'model.nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "e" / "metrics.json").exists()


@pytest.mark.parametrize("job,argv,message", [
    ("train", ["--set", "train.nosuch=1"], "unknown key 'train.nosuch'"),
    ("train", ["--set", "cluster.nosuch=1"], "unknown key 'cluster.nosuch'"),
    ("train", ["--set", "cluster.max_failures=x"], "override 'cluster.max_failures=x'"),
    ("pseudo_masks", ["--annotations", "a.json", "--images", "i", "--out", "o", "--backend", "box",
                      "--set", "teacher.nosuch=1"], "unknown key 'teacher.nosuch'"),
])
def test_training_and_pseudo_masks_refuse_unknown_keys(job, argv, message, capsys):
    import importlib

    main = importlib.import_module(f"jobs.{job}").main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
