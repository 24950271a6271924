"""Tower weights by name, from the Hugging Face cache, offline unless allowed (paper Sec. 4.1 towers).

``model.backbone.weights`` and ``model.text.weights`` take a local file, or a name the libraries
publish their weights under:

* backbone (timm): ``hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k`` or the timm tag
  ``swin_tiny_patch4_window7_224.ms_in1k`` (timm's pretrained config names the hub repository);
  the repository's ``model.safetensors``, else ``pytorch_model.bin``;
* text (open_clip): ``ViT-B-32/openai`` (architecture/tag from open_clip's pretrained table, which
  names the hub repository) or ``hf-hub:ORG/REPO``; the repository's ``open_clip_model.safetensors``,
  else ``open_clip_pytorch_model.bin``.

A name is resolved by ``huggingface_hub.hf_hub_download`` in the standard cache (``HF_HUB_CACHE``,
else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``) with ``local_files_only=True``: nothing is
downloaded unless the tower's ``allow_download`` setting says so. A missing cache entry is one
line naming the command that fills the cache on a machine with network access.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsNotCachedError(FileNotFoundError):
    """A weights name whose files are not in the local Hugging Face cache (and downloads are off)."""


@dataclass(frozen=True)
class HubWeights:
    """Where a weights name points: a hub repository and the files to try there, in order."""

    name: str
    repo_id: str
    filenames: tuple[str, ...]
    revision: str | None = None


def hub_cache_dir() -> str:
    """The Hugging Face hub cache this process uses, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _timm_name(spec: str) -> HubWeights | None:
    if spec.startswith("hf-hub:"):
        return HubWeights(spec, spec[len("hf-hub:"):], TIMM_FILES)
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(spec)
    except (RuntimeError, ValueError, KeyError):
        return None
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        return None
    files = tuple(f for f in (getattr(cfg, "hf_hub_filename", None),) if f) + TIMM_FILES
    return HubWeights(spec, cfg.hf_hub_id, files)


def _open_clip_name(spec: str) -> HubWeights | None:
    if spec.startswith("hf-hub:"):
        return HubWeights(spec, spec[len("hf-hub:"):], OPEN_CLIP_FILES)
    if spec.count("/") != 1:
        return None
    arch, tag = spec.split("/")
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch, tag)
    hub = (cfg or {}).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # "org/repo/" names the repository only, "org/repo/file" a file too
    files = ((filename,) if filename else ()) + OPEN_CLIP_FILES
    return HubWeights(spec, repo, tuple(dict.fromkeys(files)))


def hub_weights(spec: str, kind: str) -> HubWeights | None:
    """The hub entry of a weights name, or None when ``spec`` is not a name (a file path).

    Args:
        spec: the setting's value.
        kind: ``"backbone"`` (timm names) or ``"text"`` (open_clip names).
    """
    if kind not in ("backbone", "text"):
        raise ValueError(f"kind must be 'backbone' or 'text', got {kind!r}")
    if Path(spec).exists() or "://" in spec:
        return None
    return _timm_name(spec) if kind == "backbone" else _open_clip_name(spec)


def resolve_weights(spec: str, kind: str, allow_download: bool = False) -> str:
    """A weights setting as a local file: the path itself, or a name's file from the hub cache.

    Args:
        spec: a file path, or a name (module docstring).
        kind: ``"backbone"`` or ``"text"``.
        allow_download: fetch a name missing from the cache (the tower's ``allow_download`` setting).

    Raises:
        WeightsNotCachedError: a name not in the cache, with downloads off (names the fill command).
    """
    entry = hub_weights(spec, kind)
    if entry is None:
        return spec
    from huggingface_hub import hf_hub_download

    cache = hub_cache_dir()
    last: Exception | None = None
    for filename in entry.filenames:
        try:
            return hf_hub_download(entry.repo_id, filename, revision=entry.revision, cache_dir=cache,
                                   local_files_only=not allow_download)
        except Exception as exc:  # not cached / not in the repository: try the next file name
            last = exc
    setting = f"model.{kind}.allow_download"
    if allow_download:
        raise WeightsNotCachedError(f"{spec}: none of {list(entry.filenames)} could be fetched from the hub "
                                    f"repository {entry.repo_id} ({type(last).__name__}: {last})")
    raise WeightsNotCachedError(
        f"{spec}: not in the Hugging Face cache {cache} (no download at run time); fill it on a machine with "
        f"network access and the same HF_HOME: `hf download {entry.repo_id} {entry.filenames[0]}` "
        f"(or huggingface-cli download ...), copy the cache, or set {setting}=true")
