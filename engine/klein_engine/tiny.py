"""`tiny`: a seeded random-weights miniature of FLUX.2 [klein], saved in diffusers layout.

Same classes as the real model (Flux2Transformer2DModel, AutoencoderKLFlux2, Qwen3ForCausalLM,
a byte-level BPE tokenizer with the Qwen3 chat template), tiny widths, so that the real
loading code and the whole pipeline run in every test on a CPU in seconds. Its images are
noise: it proves plumbing and numerics, not quality.

Model names: `tiny` (distilled, the 4B's proportions), `tiny-base` (not distilled), `tiny-9b`
(the 9B's block counts and its text encoder's proportions, SHAPES), or `tiny:<variant>`.

The same seed always builds byte-identical files. Builds are cached under
$KLEIN_CACHE_DIR (default engine/.cache) keyed by seed, variant and TINY_VERSION.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

# Bump when the recipe changes, so cached builds are rebuilt.
TINY_VERSION = "1"

# Text encoder: more than 27 layers so that the 9/18/27 read-out and the truncation to the
# layers that are read are both exercised.
TEXT_LAYERS = 30
TEXT_HIDDEN = 16

# The two sizes of the family, shrunk (reference §2-3). `4b` is the recipe `tiny` has always
# had. `9b` keeps what differs in the klein-9B: its block counts (8 double, 24 single, against
# the 4B's 5 and 20; here against tiny's 1 and 1), a wider transformer (hidden 4096 against
# 3072: 2 heads of 8 against 1), and Qwen3-8B's proportions to Qwen3-4B (hidden 4096:2560 =
# 1.6, so 26 against 16, hence joint_attention_dim 78 = 3 × 26 against 48; intermediate
# 12288:9728 ≈ 1.26, so 40 against 32). Qwen3-8B has 36 layers like Qwen3-4B and the 9B reads
# the same layers 9, 18 and 27 (joint_attention_dim 12288 = 3 × 4096), so 30 layers here too.
SHAPES = {
    "4b": dict(text_hidden=TEXT_HIDDEN, text_intermediate=32, text_layers=TEXT_LAYERS, double=1, single=1, heads=1),
    "9b": dict(text_hidden=26, text_intermediate=40, text_layers=TEXT_LAYERS, double=8, single=24, heads=2),
}

# The subset of Qwen3's chat template that the pipeline uses (one user turn, generation
# prompt, thinking disabled); it renders exactly what Qwen3's template renders for that:
# "<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n".
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# Training text for the tokenizer: fixed, so the vocabulary is always the same.
_CORPUS = [
    "a photo of a cat sitting on a wooden table in the morning light",
    "an oil painting of a lighthouse at dusk, waves crashing on the rocks",
    "a humanoid figure with a vintage television for a head, wearing a yellow raincoat",
    "low quality, blurry, less details",
    "make it blue; change the background to a snowy mountain; add a red hat",
    "the quick brown fox jumps over the lazy dog 0123456789",
    "portrait, landscape, studio lighting, cinematic, 35mm, bokeh, watercolor, sketch",
    "user assistant system think",
] * 4


def cache_dir() -> Path:
    env = os.environ.get("KLEIN_CACHE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".cache"


def _build_tokenizer(path: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="right",
        model_max_length=131072,
    )
    fast.chat_template = CHAT_TEMPLATE
    save_tokenizer(fast, path)
    return len(fast)


def save_tokenizer(tokenizer, path: Path) -> None:
    """Saves `tokenizer` under the class name the real repository gives (Qwen2Tokenizer), so
    loading takes the same path."""
    tokenizer.save_pretrained(str(path))
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# The scheduler config of the real repositories (FLUX.2's: dynamic, exponential time shift).
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential")

# Each variant: whether it is distilled (model_index.json's `is_distilled`), what its
# scheduler config changes, and its shape (SHAPES). `static-shift` has the distilled model's
# weights with a fixed shift instead of the resolution-dependent one, so a test can see that
# the engine takes its schedule from the model directory. `9b` is the distilled klein-9B's
# miniature (model name `tiny-9b`).
VARIANTS = {
    "distilled": (True, {}, "4b"),
    "base": (False, {}, "4b"),
    "static-shift": (True, {"use_dynamic_shifting": False, "shift": 3.0}, "4b"),
    "9b": (True, {}, "9b"),
}

# Model names (KLEIN_MODEL) for the miniatures, besides `tiny:<variant>`.
MODEL_NAMES = {"tiny": "distilled", "tiny-base": "base", "tiny-9b": "9b"}


def variant_of(model: str) -> str | None:
    """The variant a model name stands for (`tiny`, `tiny-base`, `tiny-9b`, `tiny:<variant>`),
    or None when it names no miniature."""
    if model in MODEL_NAMES:
        return MODEL_NAMES[model]
    if model.startswith("tiny:"):
        return model.partition(":")[2] or "distilled"
    return None


def save_scheduler_and_index(out: Path, distilled: bool, scheduler_config: dict | None = None) -> None:
    """The scheduler config and model_index.json of a diffusers-layout FLUX.2 [klein] model,
    as the real repositories have them (`scheduler_config` changes the scheduler's)."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(**{**SCHEDULER_CONFIG, **(scheduler_config or {})})
    scheduler.save_pretrained(str(out / "scheduler"))
    index = {
        "_class_name": "Flux2KleinPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen3ForCausalLM"],
        "tokenizer": ["transformers", "Qwen2TokenizerFast"],
        "transformer": ["diffusers", "Flux2Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"],
    }
    if distilled:
        index["is_distilled"] = True
    (out / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def build_tiny(path: str | os.PathLike, seed: int = 0, variant: str = "distilled") -> Path:
    """Builds the miniature into `path` (created; must not exist or be empty)."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    distilled, scheduler_config, shape_name = VARIANTS[variant]
    shape = SHAPES[shape_name]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    vocab = _build_tokenizer(out / "tokenizer")

    torch.manual_seed(seed)
    text_cfg = Qwen3Config(
        vocab_size=vocab,
        hidden_size=shape["text_hidden"],
        intermediate_size=shape["text_intermediate"],
        num_hidden_layers=shape["text_layers"],
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        pad_token_id=0,
    )
    text_encoder = Qwen3ForCausalLM(text_cfg).eval()
    text_encoder.save_pretrained(str(out / "text_encoder"), safe_serialization=True)

    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,
        num_layers=shape["double"],
        num_single_layers=shape["single"],
        attention_head_dim=8,
        num_attention_heads=shape["heads"],
        joint_attention_dim=3 * shape["text_hidden"],
        timestep_guidance_channels=32,
        mlp_ratio=3.0,
        axes_dims_rope=(2, 2, 2, 2),
        rope_theta=2000,
        eps=1e-6,
        guidance_embeds=False,
    ).eval()
    transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)

    vae = AutoencoderKLFlux2(
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=2,
        mid_block_add_attention=True,
        patch_size=(2, 2),
    ).eval()
    # Non-trivial latent statistics so the BatchNorm normalisation is really exercised.
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.randn_like(vae.bn.running_mean) * 0.1)
        vae.bn.running_var.copy_(torch.rand_like(vae.bn.running_var) + 0.5)
    vae.save_pretrained(str(out / "vae"), safe_serialization=True)

    save_scheduler_and_index(out, distilled=distilled, scheduler_config=scheduler_config)
    return out


def ensure_tiny(seed: int = 0, variant: str = "distilled") -> Path:
    """Returns the cached build for (seed, variant), building it first if needed.

    Builds into a temporary directory and renames it into place, so a crash or a concurrent
    build never leaves a half-written model behind.
    """
    root = cache_dir()
    target = root / f"tiny-v{TINY_VERSION}-{variant}-seed{seed}"
    if (target / "model_index.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=root))
    try:
        build_tiny(tmp, seed=seed, variant=variant)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first: use its build.
            if not (target / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m klein_engine build-tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory to write (default: the cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=list(VARIANTS), default="distilled")
    args = parser.parse_args(argv)
    path = build_tiny(args.out, args.seed, args.variant) if args.out else ensure_tiny(args.seed, args.variant)
    print(path)
    return 0
