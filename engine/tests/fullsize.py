"""The full-size FLUX.2 [klein] 4B and 9B architectures with random weights, for the GPU tests and the
benchmark (bench/engine.py imports it as `tests.fullsize`): random weights cost exactly the
FLOPs and bytes of the real ones, so no download is needed. The configs are the real
model's (transformer and VAE from its diffusers configs, the text encoder from Qwen3-4B's;
reference §2–4). The tokenizer is the tiny model's: prompts are padded to 512 tokens either
way, so the encoder's work is the same.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import torch

from klein_engine.load import Components, load_components, read_schedule
from klein_engine.options import EngineOptions
from klein_engine.pipeline import KleinEngine
from klein_engine.tiny import ensure_tiny, save_scheduler_and_index, save_tokenizer, variant_of

CONFIGS = {
    "klein-4b": {
        "transformer": dict(patch_size=1, in_channels=128, num_layers=5, num_single_layers=20, attention_head_dim=128,
                            num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256, mlp_ratio=3.0,
                            axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, eps=1e-6, guidance_embeds=False),
        "text": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1_000_000.0,
                     tie_word_embeddings=True),
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=32, norm_num_groups=32,
                    mid_block_add_attention=True, patch_size=(2, 2)),
    },
}
# The klein-9B (reference §2-3): 8 double and 24 single blocks of hidden 4096 (32 heads of 128),
# joint_attention_dim 12288 = 3 × 4096; its text encoder is Qwen3-8B (hidden 4096, intermediate
# 12288, 36 layers, 32 query and 8 key-value heads of 128, untied embeddings). Same VAE.
CONFIGS["klein-9b"] = {
    "transformer": dict(CONFIGS["klein-4b"]["transformer"], num_layers=8, num_single_layers=24, num_attention_heads=32,
                        joint_attention_dim=12288),
    "text": dict(CONFIGS["klein-4b"]["text"], hidden_size=4096, intermediate_size=12288, tie_word_embeddings=False),
    "vae": CONFIGS["klein-4b"]["vae"],
}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_components(config: str, device: str, dtype: torch.dtype, seed: int = 0) -> Components:
    """Random-weight components built directly on `device` in `dtype` (no float32 copy)."""
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    configs = CONFIGS[config]
    tiny = ensure_tiny()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny / "tokenizer"))
    torch.manual_seed(seed)
    with torch.device(device), _default_dtype(dtype):
        text = Qwen3ForCausalLM(Qwen3Config(**configs["text"], pad_token_id=0)).to(dtype).eval()
        transformer = Flux2Transformer2DModel(**configs["transformer"]).to(dtype).eval()
        vae = AutoencoderKLFlux2(**configs["vae"]).to(dtype).eval()
    for m in (text, transformer, vae):
        m.requires_grad_(False)
    return Components(path=tiny, variant="distilled", model_index={"is_distilled": True}, tokenizer=tokenizer,
                      text_encoder=text, transformer=transformer, vae=vae, schedule=read_schedule(tiny))


def build_engine(config: str, device: str, options: Optional[EngineOptions] = None):
    """A KleinEngine on the random full-size model (`config` "tiny" or "tiny-9b": that
    miniature itself, the CPU stand-in of klein-4b or klein-9b)."""
    options = options or EngineOptions()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if config in ("tiny", "tiny-9b"):
        path = ensure_tiny(variant=variant_of(config))
        return KleinEngine(config, load_components(str(path), device, dtype), device, dtype, options=options)
    return KleinEngine(f"random:{config}", build_components(config, device, dtype), device, dtype, options=options)


def save_model(config: str, out: Path, device: str = "cpu") -> Path:
    """Writes the random full-size model in diffusers layout (what KLEIN_MODEL may point at),
    for measuring start-up from local disk. bf16 safetensors, ~16 GB for klein-4b."""
    out = Path(out)
    if (out / "model_index.json").exists():
        return out
    components = build_components(config, device, torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    save_tokenizer(components.tokenizer, out / "tokenizer")
    components.text_encoder.save_pretrained(str(out / "text_encoder"), safe_serialization=True)
    components.transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)
    components.vae.save_pretrained(str(out / "vae"), safe_serialization=True)
    save_scheduler_and_index(out, distilled=True)
    return out
