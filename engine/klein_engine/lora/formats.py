"""A LoRA file → low-rank factors named by the transformer's own modules (diffusers' names).

The formats are converted by diffusers' own converter, `Flux2LoraLoaderMixin.lora_state_dict`
(diffusers 0.42: loaders/lora_pipeline.py), so that a file means here what it means to
`Flux2KleinPipeline.load_lora_weights` (tests/test_lora_parity.py proves it per format):
- diffusers / PEFT: `transformer.<module>.lora_A.weight` / `.lora_B.weight`, and PEFT's
  `base_model.model.<module>…`;
- kohya / musubi-tuner: `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`, with
  `.alpha` (the converter bakes alpha/rank into the factors);
- ai-toolkit / BFL: `diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight` (or
  `lora_down`/`lora_up`), the fused qkv split into to_q/to_k/to_v with one shared A;
- ComfyUI's bare BFL names (`double_blocks.…`, `single_blocks.…`): prefixed with
  `diffusion_model.` here, which the converter does not do itself.
Ours beyond the converter: BFL/ComfyUI files with `lora_down`/`lora_up` are renamed to
lora_A/lora_B first (lora_state_dict would take any `lora_down` file for kohya's naming and
drop them); `.alpha` keys in the BFL and ComfyUI forms are baked into lora_A as
alpha/rank (kohya's convention, which the converter applies to kohya files but refuses in
these forms), and PEFT's alpha from diffusers' `lora_adapter_metadata` header.

Refused (InvalidLora, a 400 `invalid_lora`): LoKr and LoHa (diffusers fuses the model's qkv
projections to load LoKr: not a per-request delta on the shared weights), DoRA, lora_B biases,
anything the converter cannot place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from ..job import InvalidLora

# Names that only BFL's layout has; a file whose keys start with them is ComfyUI's bare form.
BARE_BFL_PREFIXES = ("double_blocks.", "single_blocks.", "img_in.", "txt_in.", "time_in.", "guidance_in.", "final_layer.",
                     "double_stream_modulation_", "single_stream_modulation.")
FORMATS = ("diffusers", "peft", "kohya", "ai-toolkit", "comfyui")
METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY


@dataclass(frozen=True)
class Factors:
    """One module's delta: scaling · B @ A, A (rank, in), B (out, rank)."""

    A: torch.Tensor
    B: torch.Tensor
    scaling: float


def detect_format(keys) -> str:
    keys = list(keys)
    if any(".lokr_" in k or k.startswith("lycoris_") for k in keys):
        return "lokr"
    if any(".hada_" in k for k in keys):
        return "loha"
    if any(k.startswith("lora_unet_") or k.startswith("lora_te") for k in keys):
        return "kohya"
    if any(k.startswith("base_model.model.") for k in keys):
        return "peft"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "ai-toolkit"
    if any(k.startswith(BARE_BFL_PREFIXES) for k in keys):
        return "comfyui"
    if any(k.startswith("transformer.") for k in keys):
        return "diffusers"
    return "unknown"


def _bake_alpha(sd: dict) -> None:
    """`<module>.alpha` next to lora_A/lora_down: A ·= alpha / rank, the key dropped (kohya's
    convention: diffusers' kohya converter does the same)."""
    for key in [k for k in sd if k.endswith(".alpha")]:
        module = key[: -len(".alpha")]
        down = next((f"{module}.{n}.weight" for n in ("lora_A", "lora_down") if f"{module}.{n}.weight" in sd), None)
        if down is None:
            raise InvalidLora(f"{key}: an alpha without a lora_A/lora_down weight beside it")
        alpha = float(sd.pop(key).float().reshape(-1)[0])
        sd[down] = sd[down] * (alpha / sd[down].shape[0])


def _metadata_scaling(metadata: Optional[Mapping[str, str]]):
    """diffusers' `lora_adapter_metadata` (PEFT's LoraConfig for `transformer.`, what
    save_lora_weights writes) → module name, rank → alpha / rank (PEFT's scaling); None without it."""
    raw = (metadata or {}).get(METADATA_KEY)
    if not raw:
        return None
    try:
        config = {k.removeprefix("transformer."): v for k, v in json.loads(raw).items() if k.startswith("transformer.")}
    except (json.JSONDecodeError, AttributeError) as e:
        raise InvalidLora(f"the file's {METADATA_KEY} header is not a JSON object: {e}") from None
    if not config:
        return None
    if config.get("use_dora"):
        raise InvalidLora("DoRA adapters (use_dora) are not supported")
    alpha = float(config.get("lora_alpha", config.get("r", 8)))
    patterns = config.get("alpha_pattern") or {}
    rslora = bool(config.get("use_rslora"))

    def scaling(module: str, rank: int) -> float:
        a = alpha
        # PEFT's get_pattern_key: a pattern matches the whole name or a dotted suffix of it.
        for pattern, value in patterns.items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                a = float(value)
                break
        return a / (rank**0.5 if rslora else rank)

    return scaling


def convert(state_dict: Mapping[str, torch.Tensor], metadata: Optional[Mapping[str, str]] = None) -> tuple[str, dict[str, Factors]]:
    """(format, {transformer module name: Factors}). InvalidLora says why a file cannot be used."""
    from diffusers.loaders.lora_pipeline import Flux2LoraLoaderMixin

    sd = dict(state_dict)
    if not sd:
        raise InvalidLora("the file holds no tensors")
    fmt = detect_format(sd)
    if fmt in ("lokr", "loha"):
        raise InvalidLora(f"{fmt} adapters are not supported (only LoRA: lora_A/lora_B or lora_down/lora_up pairs)")
    if fmt == "unknown":
        raise InvalidLora(f"not a FLUX.2 LoRA: no key in a known layout (first key {next(iter(sd))!r})")
    if any("dora_scale" in k or "lora_magnitude_vector" in k for k in sd):
        raise InvalidLora("DoRA adapters are not supported")
    if any(k.startswith(("lora_te", "text_encoder.")) for k in sd):
        raise InvalidLora("text-encoder LoRA weights are not supported (klein's adapters train the transformer only)")
    if fmt == "comfyui":
        sd = {f"diffusion_model.{k}": v for k, v in sd.items()}
    if fmt in ("comfyui", "ai-toolkit", "peft"):
        _bake_alpha(sd)
        # lora_state_dict sends any file with a `.lora_down.weight` to its kohya converter,
        # which drops BFL names; the BFL converter itself reads lora_down/lora_up as A/B.
        sd = {k.replace(".lora_down.", ".lora_A.").replace(".lora_up.", ".lora_B."): v for k, v in sd.items()}
    try:
        converted = Flux2LoraLoaderMixin.lora_state_dict(sd)
    except (ValueError, KeyError, IndexError, RuntimeError, AssertionError) as e:
        raise InvalidLora(f"cannot convert the {fmt} LoRA: {str(e).splitlines()[0][:300]}") from None
    if fmt == "kohya":
        # The converter pops what it places and only warns about the rest; applying part of
        # an adapter would be wrong, so what it left is refused.
        if sd:
            raise InvalidLora(f"{next(iter(sd))}: a kohya key with no FLUX.2 transformer module ({len(sd)} such keys)")
    scaling = _metadata_scaling(metadata) if fmt in ("diffusers", "peft") else None
    factors: dict[str, Factors] = {}
    modules = {}
    for key, tensor in converted.items():
        m = re.fullmatch(r"transformer\.(.+)\.(lora_A|lora_B)\.weight", key)
        if m is None:
            if key.endswith(".lora_B.bias"):
                raise InvalidLora(f"{key}: lora_B biases are not supported")
            raise InvalidLora(f"{key}: not a lora_A/lora_B weight of the transformer")
        modules.setdefault(m.group(1), {})[m.group(2)] = tensor
    if not modules:
        raise InvalidLora(f"the {fmt} LoRA has no transformer weights")
    for name, pair in modules.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise InvalidLora(f"transformer.{name}: has {', '.join(sorted(pair))} but not both lora_A and lora_B")
        A, B = pair["lora_A"], pair["lora_B"]
        if A.dim() != 2 or B.dim() != 2:
            raise InvalidLora(f"transformer.{name}: lora_A and lora_B must be matrices, got {tuple(A.shape)} and {tuple(B.shape)}")
        if B.shape[1] != A.shape[0]:
            raise InvalidLora(f"transformer.{name}: lora_A has rank {A.shape[0]} but lora_B has rank {B.shape[1]}")
        factors[name] = Factors(A, B, scaling(name, A.shape[0]) if scaling else 1.0)
    return fmt, factors
