"""``--backend mmdet`` where MMDetection is not installed: one line naming ``make install-mmdet``."""

from __future__ import annotations

import sys

import pytest

from vloss.teacher.mmdet_predictor import MissingBackendError, require_mmdet


@pytest.fixture
def no_mmdet(monkeypatch):
    """This interpreter as one without mmdet: its import fails as for a package that is not there."""
    monkeypatch.setitem(sys.modules, "mmdet", None)


def test_the_backend_check_names_the_install_command(no_mmdet):
    with pytest.raises(MissingBackendError, match="make install-mmdet"):
        require_mmdet()


def test_the_job_refuses_in_one_line_before_any_work(no_mmdet, synthetic_source, tmp_path, capsys):
    from jobs.pseudo_masks import main

    ckpt = tmp_path / "zoo.pth"
    ckpt.write_bytes(b"not read")
    code = main(["--backend", "mmdet", "--mmdet-config", "mask-rcnn_r50_fpn_1x_coco", "--checkpoint", str(ckpt),
                 "--annotations", str(synthetic_source.annotations), "--images", str(synthetic_source.images),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "make install-mmdet" in err[0], err
    assert not (tmp_path / "out" / "_manifest.json").exists()
