"""Prompt encoding as the reference pipeline does it, with an LRU cache.

Qwen3 chat template (thinking disabled) → 512 tokens (padded / truncated) → the hidden
states after layers 9, 18 and 27 concatenated per token: (B, 512, 3 × hidden).
Only the layers that are read run (27 of Qwen3-4B's 36): the others cannot change the
read-out, because each layer only sees the ones before it.

Each prompt is encoded on its own (batch 1), as the reference pipeline does: on a GPU a
batched run may pick other GEMM kernels, so an embedding would depend on which prompts
happened to miss the cache together, and the same request could give other bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch

from .offload import Placement

MAX_SEQUENCE_LENGTH = 512
OUT_LAYERS = (9, 18, 27)


def truncate_to_read_layers(text_encoder, out_layers: Sequence[int] = OUT_LAYERS) -> None:
    """Drops decoder layers after the last one that is read (hidden_states[k] is the output
    of layer k; hidden_states[0] is the embedding), so 27 of Qwen3-4B's 36 layers run.
    The final RMSNorm becomes the identity: transformers reports the *normed* last state as
    hidden_states[-1], and with the cut that entry is the read-out hidden_states[27], which
    in the full model is the raw output of layer 27."""
    keep = max(out_layers)
    base = text_encoder.model
    if len(base.layers) < keep:
        return
    if len(base.layers) > keep:
        base.layers = torch.nn.ModuleList(list(base.layers)[:keep])
        text_encoder.config.num_hidden_layers = keep
        if hasattr(text_encoder.config, "layer_types") and text_encoder.config.layer_types:
            text_encoder.config.layer_types = text_encoder.config.layer_types[:keep]
    base.norm = torch.nn.Identity()


def chat_text(tokenizer, prompt: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


class TextEncoder:
    def __init__(self, tokenizer, text_encoder, cache_size: int = 64, out_layers: Sequence[int] = OUT_LAYERS,
                 placement: Optional[Placement] = None):
        self.tokenizer = tokenizer
        self.model = text_encoder
        self.out_layers = tuple(out_layers)
        self.cache_size = cache_size
        self._cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        if len(text_encoder.model.layers) < max(self.out_layers):
            raise ValueError(
                f"the text encoder has {len(text_encoder.model.layers)} layers; layers {self.out_layers} are read"
            )
        truncate_to_read_layers(text_encoder, self.out_layers)
        self.placement = placement or Placement(text_encoder, text_encoder.device)

    @property
    def width(self) -> int:
        return len(self.out_layers) * self.model.config.hidden_size

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), 512, width) embeddings; cached per prompt text."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            fresh = self._run(missing)
            for p, e in zip(missing, fresh):
                self._cache[p] = e
        out = []
        for p in prompts:
            self._cache.move_to_end(p)
            out.append(self._cache[p])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(out, dim=0)

    @torch.inference_mode()
    def _run(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        with self.placement.on_device() as device:
            return [self._run_one(p, device) for p in prompts]

    def _run_one(self, prompt: str, device: torch.device) -> torch.Tensor:
        enc = self.tokenizer(
            [chat_text(self.tokenizer, prompt)], return_tensors="pt", padding="max_length", truncation=True,
            max_length=MAX_SEQUENCE_LENGTH,
        )
        out = self.model(
            input_ids=enc["input_ids"].to(device),
            attention_mask=enc["attention_mask"].to(device),
            output_hidden_states=True,
            use_cache=False,
        )
        h = torch.stack([out.hidden_states[k] for k in self.out_layers], dim=1)
        b, n, s, d = h.shape
        return h.permute(0, 2, 1, 3).reshape(s, n * d)
