"""Fixtures for the training job: training shards built from the session's synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_shards(synthetic_world: Path, ray_session, tmp_path_factory) -> Path:
    """The chain a user runs: the pseudo-mask job (box backend) over the world's Objects365 boxes,
    then training shards from the world and those pseudo masks; built once."""
    from pipelines.pseudo_masks.config import PseudoMaskJobConfig
    from pipelines.pseudo_masks.job import run_pseudo_masks
    from pipelines.train.data_prep import prepare_shards
    from vloss.teacher.config import TeacherConfig

    work = tmp_path_factory.mktemp("train_data")
    o365 = synthetic_world / "objects365"
    run_pseudo_masks(PseudoMaskJobConfig(annotations=str(o365 / "annotations" / "train.json"),
                                         images=str(o365 / "images" / "train"), out=str(work / "pseudo_masks"),
                                         teacher=TeacherConfig(backend="box"), rows_per_shard=32))
    return Path(prepare_shards(str(synthetic_world), str(work), pseudo_masks=str(work / "pseudo_masks"),
                               extra_image_text=True,
                               rows_per_shard=32))


# the towers the learning test starts from: the demo's pretraining settings, shortened to 3 passes
# (111 steps of 128 over the world's 4800-image corpus; about a minute on 2 cores)
TOWER_SETTINGS = {"image_size": 64, "epochs": 3}


@pytest.fixture(scope="session")
def pretrained_towers(synthetic_world: Path, ray_session, tmp_path_factory) -> dict[str, str]:
    """``{"backbone", "text"}``: tower files pretrained by the real job on the world's corpus, as
    ``make demo`` makes them (the paper starts VLOSS from pretrained towers, Sec. 4.1)."""
    from pipelines.train.config import ClusterConfig
    from pipelines.train.pretrain.inputs import class_names
    from pipelines.train.pretrain.job import run_pretraining
    from vloss.pretrain.config import PretrainConfig

    out = tmp_path_factory.mktemp("towers")
    corpus = synthetic_world / "pretrain_corpus"
    classes = class_names(None, str(synthetic_world))
    run_pretraining(PretrainConfig(**TOWER_SETTINGS), str(corpus / "annotations" / "captions.json"),
                    str(corpus / "images"), str(out), ClusterConfig(workers=2), classes=classes)
    return {"backbone": str(out / "backbone.bin"), "text": str(out / "text.bin")}
