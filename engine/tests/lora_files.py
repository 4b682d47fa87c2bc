"""Seeded random LoRAs for FLUX.2 transformers, one adapter written in every layout the engine
reads (lora/formats.py), by hand here, not by the converters under test.

The adapter is drawn in BFL's layout (the original model's module names: fused qkv in the
double blocks, linear1/linear2 in the single blocks), rank RANK, and written as
- `ai-toolkit`: `diffusion_model.<bfl name>.lora_A.weight` / `.lora_B.weight`;
- `comfyui`: the same bare (`double_blocks.0.…`), as `lora_down`/`lora_up`;
- `peft`: `base_model.model.<bfl name>.lora_A.weight` (PEFT's own prefix);
- `kohya`: `lora_unet_<bfl name with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, the
  factors divided so that alpha/rank · up @ down is the same delta;
- `diffusers`: `transformer.<diffusers module>.lora_A.weight`, the fused qkv written as
  to_q/to_k/to_v with the one A and B's thirds (the split that diffusers' converter makes).
Each layout thus means the same delta W' = W + B @ A on every targeted layer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import save_file

RANK = 4
FORMATS = ("diffusers", "peft", "kohya", "ai-toolkit", "comfyui")

# BFL module → the diffusers module(s) it is; qkv → three, its B split in thirds.
DOUBLE = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "img_attn.proj": ("attn.to_out.0",),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.linear_in",),
    "img_mlp.2": ("ff.linear_out",),
    "txt_mlp.0": ("ff_context.linear_in",),
    "txt_mlp.2": ("ff_context.linear_out",),
}
SINGLE = {"linear1": ("attn.to_qkv_mlp_proj",), "linear2": ("attn.to_out",)}


def _targets(transformer) -> dict[str, tuple[tuple[str, ...], int, int]]:
    """BFL name → (diffusers names, in_features, out_features of the BFL layer)."""
    out = {}
    for i, _ in enumerate(transformer.transformer_blocks):
        for bfl, names in DOUBLE.items():
            mods = [transformer.get_submodule(f"transformer_blocks.{i}.{n}") for n in names]
            out[f"double_blocks.{i}.{bfl}"] = (tuple(f"transformer_blocks.{i}.{n}" for n in names), mods[0].in_features,
                                               sum(m.out_features for m in mods))
    for i, _ in enumerate(transformer.single_transformer_blocks):
        for bfl, names in SINGLE.items():
            m = transformer.get_submodule(f"single_transformer_blocks.{i}.{names[0]}")
            out[f"single_blocks.{i}.{bfl}"] = ((f"single_transformer_blocks.{i}.{names[0]}",), m.in_features, m.out_features)
    return out


def random_adapter(transformer, seed: int, rank: int = RANK, std: float = 0.3) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """BFL name → (A (rank, in), B (out, rank)), float32, from `seed`."""
    gen = torch.Generator("cpu").manual_seed(seed)
    return {name: (torch.randn(rank, fin, generator=gen) * std, torch.randn(fout, rank, generator=gen) * std)
            for name, (_, fin, fout) in _targets(transformer).items()}


def layout(transformer, adapter: dict, fmt: str, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """The adapter as the state dict of a file in `fmt`. With `alpha` (kohya and comfyui),
    `.alpha` keys are written and lora_up multiplied by rank/alpha, so alpha/rank · up @ down
    is still B @ A."""
    sd: dict[str, torch.Tensor] = {}
    for name, (A, B) in adapter.items():
        up = B * (A.shape[0] / alpha) if alpha is not None else B
        if fmt == "ai-toolkit":
            sd[f"diffusion_model.{name}.lora_A.weight"], sd[f"diffusion_model.{name}.lora_B.weight"] = A, B
        elif fmt == "peft":
            sd[f"base_model.model.{name}.lora_A.weight"], sd[f"base_model.model.{name}.lora_B.weight"] = A, B
        elif fmt == "comfyui":
            sd[f"{name}.lora_down.weight"], sd[f"{name}.lora_up.weight"] = A, up
            if alpha is not None:
                sd[f"{name}.alpha"] = torch.tensor(float(alpha))
        elif fmt == "kohya":
            stem = "lora_unet_" + name.replace(".", "_")
            sd[f"{stem}.lora_down.weight"], sd[f"{stem}.lora_up.weight"] = A, up
            sd[f"{stem}.alpha"] = torch.tensor(float(alpha if alpha is not None else A.shape[0]))
        elif fmt == "diffusers":
            names = _targets(transformer)[name][0]
            for target, b in zip(names, torch.chunk(B, len(names), dim=0)):
                sd[f"transformer.{target}.lora_A.weight"] = A.clone()
                sd[f"transformer.{target}.lora_B.weight"] = b.contiguous()
        else:
            raise ValueError(fmt)
    return {k: v.contiguous() for k, v in sd.items()}


def write(directory: Path, name: str, state_dict: dict, metadata: dict | None = None) -> tuple[str, str]:
    """Writes `name`.safetensors; returns (sha256 key, absolute path)."""
    path = Path(directory) / f"{name}.safetensors"
    save_file(state_dict, str(path), metadata=metadata)
    return hashlib.sha256(path.read_bytes()).hexdigest(), str(path.resolve())
