"""Which images and crops a pretraining step trains on: a function of (seed, step) alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.train.pretrain.corpus import (
    BatchPlan,
    augment,
    caption_labels,
    epoch_order,
    label_targets,
    make_batch,
    read_corpus,
    sample_rng,
)
from pipelines.train.pretrain.worker import label_loss


def test_each_epoch_visits_distinct_images_and_ranks_split_each_batch():
    plan = BatchPlan(num_images=50, batch_size=12, world_size=3, epochs=2, seed=7)
    assert plan.steps_per_epoch == 4 and plan.total_steps == 8
    for epoch in range(2):
        seen = []
        for i in range(plan.steps_per_epoch):
            parts = [plan.rank_indices(epoch * 4 + i, r) for r in range(3)]
            assert all(e == epoch and len(ix) == 4 for e, ix in parts)
            batch = np.concatenate([ix for _, ix in parts])
            assert len(set(batch.tolist())) == 12  # the ranks' parts are disjoint
            seen += batch.tolist()
        assert len(set(seen)) == 48 and set(seen) <= set(range(50))
    assert not np.array_equal(epoch_order(50, 7, 0), epoch_order(50, 7, 1))  # reshuffled every epoch
    assert np.array_equal(epoch_order(50, 7, 1), epoch_order(50, 7, 1))
    assert not np.array_equal(epoch_order(50, 7, 0), epoch_order(50, 8, 0))


def test_batches_that_do_not_divide_or_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="does not divide over 3 workers"):
        BatchPlan(50, 16, 3, 1, 0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        BatchPlan(10, 16, 2, 1, 0)


def test_augmentation_is_drawn_from_the_seed():
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    a = augment(image, sample_rng(0, 1, 5), 0.5, True)
    b = augment(image, sample_rng(0, 1, 5), 0.5, True)
    c = augment(image, sample_rng(0, 2, 5), 0.5, True)
    assert a.shape == (3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    whole = augment(image, sample_rng(0, 0, 0), 1.0, False)  # no crop, no flip: just the normalisation
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(whole, (image.float() / 255 - mean) / std, atol=1e-5)


def test_the_world_corpus_names_every_class_in_words_only(synthetic_world):
    from pipelines.train.pretrain.inputs import class_names

    world = json.loads((synthetic_world / "world.json").read_text())
    classes = class_names(None, str(synthetic_world))
    corpus = read_corpus(synthetic_world / "pretrain_corpus/annotations/captions.json",
                         synthetic_world / "pretrain_corpus/images", classes)
    # the label objective's classes: every class of every dataset of the world, each named by some image
    every = {n for v in world["vocabularies"].values() for k in ("things", "stuff") for n in v.get(k, [])}
    assert set(classes) == every and len(classes) == len(every)
    assert {classes[i] for labels in corpus.labels for i in labels} == every
    assert len(corpus) == world["counts"]["pretrain_corpus"]["images"] == world["sizes"]["pretrain_corpus"]
    text = " ".join(c for caps in corpus.captions for c in caps)
    unseen = world["classes"]["unseen_things"] + world["classes"]["unseen_stuff"]
    assert unseen and all(name in text for name in unseen)
    assert set(unseen) <= set(world["vocabularies"]["pretrain_corpus"]["classes"])
    data = json.loads((synthetic_world / "pretrain_corpus/annotations/captions.json").read_text())
    assert all(set(a) == {"id", "image_id", "caption"} for a in data["annotations"])  # no boxes, no masks
    images, texts = make_batch(torch.zeros((len(corpus), 3, 32, 32), dtype=torch.uint8), corpus,
                               np.array([0, 3]), 0, 0, 0.6, True)
    assert images.shape == (2, 3, 32, 32) and texts[0] in corpus.captions[0] and texts[1] in corpus.captions[3]


def test_labels_are_the_class_names_the_captions_mention_as_words():
    classes = ["red circle", "snow", "red cross", "stone_wall", "sky"]
    caps = ["Two red circles on snow.", "a redcross next to a stone wall.", "skyline"]
    # plural and case accepted; "redcross" and "skyline" are not the words; "_" in a name reads as a space
    assert caption_labels(caps, classes) == [0, 1, 3]
    assert caption_labels(["nothing here"], classes) == []


def test_label_targets_and_loss_match_a_direct_computation():
    class Holder:
        classes = ["a", "b", "c"]
        labels = [[0], [1, 2], []]

    targets = label_targets(Holder, np.array([1, 0, 2]))
    assert targets.tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]]
    gen = torch.Generator().manual_seed(0)
    img, prompts, scale = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen), torch.tensor(5.0)
    expected = 0.0
    for i, named in ((0, [1, 2]), (1, [0])):  # the image that names nothing does not count
        cos = [float(img[i] @ prompts[c] / (img[i].norm() * prompts[c].norm())) for c in range(3)]
        log_z = np.log(sum(np.exp(5.0 * x) for x in cos))
        expected += -sum(5.0 * cos[c] - log_z for c in named) / len(named)
    assert abs(float(label_loss(img, prompts, scale, targets)) - expected / 2) < 1e-5
    assert float(label_loss(img, prompts, scale, torch.zeros(3, 3))) == 0.0
