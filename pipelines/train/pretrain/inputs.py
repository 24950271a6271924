"""What the towers' pretraining reads, from the launch's flags: the corpus and the label objective's
class names (``python -m jobs.pretrain`` only parses the flags)."""

from __future__ import annotations

import json
import os


def class_names(classes_file: str | None, data: str | None) -> list[str]:
    """The class names of the label objective (``--classes``, else the synthetic world's whole vocabulary).

    Args:
        classes_file: a JSON list of names, or one name per line; None: from ``data``.
        data: a synthetic world: every dataset's things and stuff, sorted; None with no file: none.

    Raises:
        ValueError: the file holds no list of non-empty names (names the file).
    """
    if classes_file:
        with open(classes_file) as f:
            text = f.read()
        try:
            names = json.loads(text)
        except ValueError:
            names = [line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{classes_file}: expected a JSON list of class names or one name per line")
        return names
    if data:
        from vloss.data.synthetic import load_world

        vocab = load_world(data)["vocabularies"]  # every dataset's class list: the world's whole vocabulary
        return sorted({name for entry in vocab.values() for key in ("things", "stuff") for name in entry.get(key, [])})
    return []


def corpus_paths(captions: str | None, images: str | None, data: str | None) -> tuple[str, str]:
    """``(captions json, image folder)``: the given pair, else the synthetic world ``data``'s corpus.

    Raises:
        FileNotFoundError: the world has no pretraining corpus (says how to regenerate it).
    """
    if captions:
        return os.path.abspath(captions), os.path.abspath(images or "")
    from vloss.data.synthetic import load_world

    world = load_world(data)
    entry = world["paths"].get("pretrain_corpus")
    if entry is None or not entry["captions"].is_file():
        raise FileNotFoundError(f"{data} has no pretrain_corpus split (a world from generator version "
                                f"{world.get('generator_version')}); regenerate it with python -m "
                                f"vloss.data.synthetic --out {data} --overwrite")
    return str(entry["captions"]), str(entry["images"])
