"""The state of the denoising loop (pipeline.py, step 6): the rows of a batch still running,
and the transformer as the velocity field the samplers integrate (sampling.py).

The model evaluation follows diffusers' Flux2KleinPipeline.__call__ (its denoising loop):
reference-image tokens follow the image tokens, the timestep is σ·1000 in float32 cast to the
latents' dtype and divided by 1000 again, and only the image tokens of the prediction are
kept. True CFG differs in form, not in numbers (tests/test_parity.py): each request's prompt
and negative prompt are two rows of one forward instead of two forwards, and each request
applies its own scale, v = neg + cfg·(cond − neg).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class RunningBatch:
    """The requests of a batch still denoising, one row each, in the caller's order.

    Row r is the job at `positions[r]` of the caller's list. With CFG its prompt and negative
    prompt are rows 2r and 2r + 1 of `prompt_embeds`; without, row r."""

    positions: list[int]
    latents: torch.Tensor  # (rows, image tokens, channels), packed
    prompt_embeds: torch.Tensor  # (rows × prompts_per_row, text tokens, width)
    reference_tokens: Optional[torch.Tensor]  # (rows, reference tokens, channels); None without references
    cfg_scales: list[float]
    use_cfg: bool

    @property
    def prompts_per_row(self) -> int:
        return 2 if self.use_cfg else 1

    def keep(self, rows: list[int]) -> None:
        """Keeps only `rows` (the jobs not cancelled) in every tensor alike, in their order."""
        if len(rows) == len(self.positions):
            return
        device = self.latents.device
        index = torch.tensor(rows, device=device)
        per_row = self.prompts_per_row
        text_index = torch.tensor([r * per_row + c for r in rows for c in range(per_row)], device=device)
        self.latents = self.latents.index_select(0, index)
        self.prompt_embeds = self.prompt_embeds.index_select(0, text_index)
        if self.reference_tokens is not None:
            self.reference_tokens = self.reference_tokens.index_select(0, index)
        self.cfg_scales = [self.cfg_scales[r] for r in rows]
        self.positions = [self.positions[r] for r in rows]


class ModelVelocity:
    """v(x, i, σ) for the rows of `batch` as they are at each call (cancelled rows leave
    between steps): one transformer forward of every row, CFG applied per request."""

    def __init__(self, transformer: Callable, batch: RunningBatch, text_ids: torch.Tensor, image_ids: torch.Tensor,
                 dtype: torch.dtype):
        self.transformer = transformer
        self.batch = batch
        self.text_ids = text_ids
        self.image_ids = image_ids  # the latents' position ids, then the references'
        self.dtype = dtype

    def __call__(self, x: torch.Tensor, i: int, sigma: torch.Tensor) -> torch.Tensor:
        batch = self.batch
        image_tokens = x.shape[1]
        hidden = x.to(self.dtype)
        if batch.reference_tokens is not None:
            hidden = torch.cat([hidden, batch.reference_tokens], dim=1)
        if batch.use_cfg:
            # Each row twice, next to itself: [x1, x1, x2, x2, …] against [p1, n1, p2, n2, …].
            hidden = hidden.expand(2, -1, -1) if x.shape[0] == 1 else hidden.repeat_interleave(2, dim=0)
        timestep = (sigma.to(torch.float32) * 1000).expand(hidden.shape[0]).to(x.dtype)
        out = self.transformer(
            hidden_states=hidden,
            timestep=timestep / 1000,
            guidance=None,
            encoder_hidden_states=batch.prompt_embeds,
            txt_ids=self.text_ids,
            img_ids=self.image_ids,
            return_dict=False,
        )[0][:, :image_tokens]
        if not batch.use_cfg:
            return out
        cond, negative = out[0::2], out[1::2]
        return guided(cond, negative, batch.cfg_scales)


def guided(cond: torch.Tensor, negative: torch.Tensor, scales: list[float]) -> torch.Tensor:
    """neg + cfg·(cond − neg), row by row with each row's own scale."""
    rows = [negative[k : k + 1] + scale * (cond[k : k + 1] - negative[k : k + 1]) for k, scale in enumerate(scales)]
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
