"""Text encoder f_T: open_clip's CLIP text tower, built from a config (no download).

The tower is open_clip's ``TextTransformer`` constructed from a ``CLIPTextCfg`` (ViT-B text:
width 512, 12 layers, 8 heads, vocab 49408) with the paper's context length 48; its causal
attention mask is built for 48 tokens. Texts are tokenised by open_clip's ``SimpleTokenizer``,
whose BPE vocabulary ships inside the package.

* :meth:`TextEncoder.encode_text` — one embedding per caption (e_text), ``[B, Dt]``.
* :meth:`TextEncoder.encode_text_tokens` — per-token embeddings and a validity mask (FILIP).
* :meth:`TextEncoder.class_embeddings` — prompt-ensembled, L2-normalised class embeddings
  (e_cls), cached per vocabulary while the tower is frozen or in eval mode.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import text_global_pool
from torch import nn

from vloss.config import TextConfig
from vloss.data.class_names import clean_names


class TextEncoder(nn.Module):
    """CLIP text tower with tokenizer, caption and class-embedding helpers.

    Args:
        cfg: text settings (context length, tower size, prompt templates, trainable).
    """

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.context_length = cfg.context_length
        text_cfg = CLIPTextCfg(
            context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.width,
            heads=cfg.heads, layers=cfg.layers,
        )
        self.tower = _build_text_tower(cfg.embed_dim, text_cfg, quick_gelu=cfg.quick_gelu)
        self.tokenizer = SimpleTokenizer(context_length=cfg.context_length)
        if len(self.tokenizer.encoder) != cfg.vocab_size:
            raise ValueError(f"text.vocab_size={cfg.vocab_size} but the tokenizer has "
                             f"{len(self.tokenizer.encoder)} tokens")
        self.embed_dim = cfg.embed_dim
        self._cache: dict[tuple, tuple[tuple, torch.Tensor]] = {}
        if not cfg.trainable:
            self.tower.requires_grad_(False)

    # ------------------------------------------------------------------ tokens
    @property
    def device(self) -> torch.device:
        return self.tower.token_embedding.weight.device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise ``texts`` to ``[B, context_length]`` ids (truncated, ending with the EOT token)."""
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        return self.tokenizer(list(texts), context_length=self.context_length).to(self.device)

    @staticmethod
    def trim(ids: torch.Tensor) -> torch.Tensor:
        """Drop the padding columns after the longest text's end token.

        With the causal mask, a token never attends to later positions, so the features of
        every real token (and the end-token pooling) are the same with or without the trailing
        padding; class names use ~5 of the 48 positions, so this saves most of the compute.
        """
        last = int(ids.argmax(dim=-1).max().item()) + 1 if ids.numel() else 1  # EOT has the largest id
        return ids[:, :last]

    def _token_features(self, ids: torch.Tensor) -> torch.Tensor:
        """Final-layer, final-LayerNorm token features ``[B, L, width]`` (causal mask cut to L)."""
        x, attn_mask = self.tower._embeds(ids)  # [B, L, width]
        length = ids.shape[1]
        if attn_mask is not None and attn_mask.shape[-1] != length:
            attn_mask = attn_mask[..., :length, :length]
        x = self.tower.transformer(x, attn_mask=attn_mask)
        return self.tower.ln_final(x)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        proj = self.tower.text_projection
        if proj is None:
            return x
        if isinstance(proj, nn.Linear):
            return proj(x)
        return x @ proj

    def encode_ids(self, ids: torch.Tensor, trim: bool = True) -> torch.Tensor:
        """Embed token ids ``[B, L]`` to ``[B, Dt]`` (EOT-token pooling, projected, not normalised).

        Args:
            ids: token ids from :meth:`tokenize`.
            trim: skip trailing padding (:meth:`trim`; same result, less compute).
        """
        if trim:
            ids = self.trim(ids)
        x = self._token_features(ids)
        pooled = text_global_pool(x, ids, pool_type=self.tower.pool_type)  # [B, width]
        return self._project(pooled)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Caption embeddings e_text.

        Args:
            captions: B strings.

        Returns:
            ``[B, Dt]`` projected embeddings, NOT normalised (the contrastive loss normalises).
        """
        return self.encode_ids(self.tokenize(captions))

    def encode_text_tokens(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-level embeddings for token-wise (FILIP) contrast.

        Args:
            captions: B strings.

        Returns:
            ``(tokens [B, L, Dt], mask [B, L])`` with L = context_length: projected per-token
            embeddings (not normalised; zeros at padding) and a bool mask that is True for real
            tokens (start, words, end) and False for padding.
        """
        ids = self.tokenize(captions)  # [B, L]
        short = self.trim(ids)
        tokens = self._project(self._token_features(short))  # [B, L', Dt]
        tokens = F.pad(tokens, (0, 0, 0, ids.shape[1] - short.shape[1]))  # [B, L, Dt]
        mask = ids != 0  # [B, L]
        return tokens * mask[..., None].to(tokens.dtype), mask

    # ------------------------------------------------------------------ class embeddings
    def _needs_grad(self) -> bool:
        return self.training and any(p.requires_grad for p in self.tower.parameters())

    def _weights_version(self) -> tuple:
        """Changes whenever any tower tensor is modified in place (optimizer steps, weight loads)."""
        return tuple((t._version, t.data_ptr()) for t in self.tower.parameters())

    def _embed_vocabulary(self, names: Sequence[str], templates: Sequence[str], chunk: int = 256) -> torch.Tensor:
        texts = [t.format(n) if "{}" in t else f"{t} {n}" for n in names for t in templates]
        feats = [self.encode_text(texts[i:i + chunk]) for i in range(0, len(texts), chunk)]
        emb = F.normalize(torch.cat(feats).float(), dim=-1)  # [C*T, Dt]
        emb = emb.view(len(names), len(templates), -1).mean(1)  # [C, Dt] template ensemble
        return F.normalize(emb, dim=-1)

    def class_embeddings(self, names: Sequence[str], templates: Optional[Sequence[str]] = None) -> torch.Tensor:
        """L2-normalised class embeddings e_cls from prompt templates.

        The names are first cleaned as ``cfg.names`` says (:func:`vloss.data.class_names.clean_names`:
        "sky-other-merged" -> "sky", "fire_engine" -> "fire engine", ...), so every caller (training,
        evaluation, prediction) prompts with the same text for the same vocabulary. Each name is put
        in every template, each text embedded and normalised, averaged over templates and normalised
        again. While the tower is being trained (``self.training`` and
        trainable parameters) the result is recomputed with gradients on every call; otherwise it
        is computed without gradients and cached per ``(names, templates)`` until the tower's
        weights change.

        Args:
            names: C class names, as the dataset or the user spells them.
            templates: prompt templates with ``{}`` for the name; default ``cfg.templates``.

        Returns:
            ``[C, Dt]`` float32 unit vectors.
        """
        if not names:
            raise ValueError("class_embeddings needs at least one class name")
        names = clean_names(names, self.cfg.names)
        templates = tuple(templates) if templates is not None else tuple(self.cfg.templates)
        if self._needs_grad():
            return self._embed_vocabulary(names, templates)
        key = (tuple(names), templates)
        version = self._weights_version()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        with torch.no_grad():
            emb = self._embed_vocabulary(names, templates)
        self._cache[key] = (version, emb)
        return emb

    def clear_cache(self) -> None:
        """Forget all cached class embeddings."""
        self._cache.clear()
