"""Loading a FLUX.2 [klein] model in diffusers layout: `tiny`, a local directory, or a hub id.

Everything is read from the model's own files: the variant from model_index.json
(`is_distilled`), widths and layer counts from each component's config, the σ schedule from
scheduler/scheduler_config.json (schedule.py). So the 4B, 9B and base repositories all load
through this code. Failures raise LoadError with one message
that names the fix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .job import LoadError
from .reproducible import prepare_cuda
from .schedule import Schedule

DEFAULT_MODEL = "black-forest-labs/FLUX.2-klein-4B"
COMPONENTS = ("text_encoder", "tokenizer", "transformer", "vae")
LAYOUT = "model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/, vae/"
# Files a hub download needs (no single-file checkpoints, no other formats).
HUB_PATTERNS = ["model_index.json", "*/config.json", "*/*.safetensors", "*/*.safetensors.index.json", "tokenizer/*", "scheduler/*", "*/generation_config.json"]


@dataclass
class Components:
    path: Path
    variant: str  # "distilled" | "base"
    model_index: dict
    tokenizer: Any
    text_encoder: Any
    transformer: Any
    vae: Any
    schedule: Schedule


def resolve_model(model: str) -> Path:
    """Turns KLEIN_MODEL into a local diffusers-layout directory (building or downloading)."""
    from .tiny import ensure_tiny, variant_of

    variant = variant_of(model)
    if variant is not None:
        return ensure_tiny(seed=0, variant=variant)
    p = Path(model).expanduser()
    if p.exists() or model.startswith(("/", ".", "~")):
        if not p.is_dir():
            raise LoadError(f"model directory {p} does not exist: set KLEIN_MODEL to a diffusers-layout directory ({LAYOUT}), a hub id, or 'tiny'")
        return p.resolve()
    return _download(model)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as e:  # pragma: no cover - the lock file pins it
        raise LoadError(f"huggingface_hub is missing from the engine environment ({e}); rerun `npm run setup:engine`") from None
    token = os.environ.get("HF_TOKEN") or None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, token=token))
    except GatedRepoError:
        raise LoadError(
            f"{repo_id} is gated: accept its licence on the Hugging Face hub with your account, then set HF_TOKEN "
            "to a token of that account (or download it yourself and set KLEIN_MODEL to the directory)"
        ) from None
    except RepositoryNotFoundError:
        hint = "" if token else " (if it is private or gated, set HF_TOKEN)"
        raise LoadError(f"no model {repo_id} on the hub{hint}: set KLEIN_MODEL to a hub id, a local directory, or 'tiny'") from None
    except LocalEntryNotFoundError:
        raise LoadError(
            f"cannot download {repo_id}: the hub is not reachable and it is not in the local cache. "
            "Download it where the hub is reachable and set KLEIN_MODEL to the directory, or use KLEIN_MODEL=tiny"
        ) from None
    except Exception as e:  # network errors come in many types
        raise LoadError(f"cannot download {repo_id}: {type(e).__name__}: {e}. Set KLEIN_MODEL to a local directory, or use KLEIN_MODEL=tiny") from None


def _read_json(file: Path, missing: str) -> dict:
    """A JSON object from one of the model's files; LoadError `missing` when it is not there."""
    if not file.is_file():
        raise LoadError(missing)
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise LoadError(f"{file} is not valid JSON ({e}): the download is corrupt; delete it and download again") from None
    if not isinstance(data, dict):
        raise LoadError(f"{file} is not a JSON object: the download is corrupt; delete it and download again")
    return data


def read_schedule(path: Path) -> Schedule:
    """The model's σ schedule, from scheduler/scheduler_config.json."""
    file = Path(path) / "scheduler" / "scheduler_config.json"
    missing = f"scheduler/scheduler_config.json is missing from {path}: the download is partial; download the model again"
    return Schedule(_read_json(file, missing), source=str(file))


def _check_layout(path: Path) -> dict:
    index = _read_json(path / "model_index.json",
                       f"{path} has no model_index.json: it must be a diffusers-layout FLUX.2 [klein] model ({LAYOUT})")
    for name in COMPONENTS:
        d = path / name
        if not d.is_dir():
            raise LoadError(f"{name}/ is missing from {path}: the directory must be a diffusers-layout FLUX.2 [klein] model ({LAYOUT}); download it again")
        if name == "tokenizer":
            continue
        if not (d / "config.json").is_file():
            raise LoadError(f"{name}/config.json is missing from {path}: the download is partial; download the model again")
        if not any(d.glob("*.safetensors")):
            raise LoadError(f"{name}/ in {path} has no .safetensors weights: the download is partial; download the model again")
    return index


def load_components(model: str, device: str, dtype, text_device: str | None = None,
                    transformer_device: str | None = None) -> Components:
    """Resolves `model` and loads every component onto `device` in `dtype`; the text encoder
    onto `text_device` (KLEIN_OFFLOAD=model keeps it on the CPU) and the transformer onto
    `transformer_device` (KLEIN_GO_FAST_ONLY=1 quantises it from the CPU) when given."""
    prepare_cuda(device)
    path = resolve_model(model)
    index = _check_layout(path)
    variant = "distilled" if index.get("is_distilled", False) else "base"
    schedule = read_schedule(path)

    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(name: str, fn):
        try:
            return fn()
        except LoadError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LoadError(f"cannot load {name}/ from {path}: {first}. The files are corrupt or partial; download the model again") from None

    tokenizer = load("tokenizer", lambda: AutoTokenizer.from_pretrained(str(path / "tokenizer")))
    text_encoder = load(
        "text_encoder", lambda: AutoModelForCausalLM.from_pretrained(str(path / "text_encoder"), dtype=dtype).to(text_device or device).eval()
    )
    transformer = load(
        "transformer", lambda: Flux2Transformer2DModel.from_pretrained(str(path / "transformer"), torch_dtype=dtype).to(transformer_device or device).eval()
    )
    vae = load("vae", lambda: AutoencoderKLFlux2.from_pretrained(str(path / "vae"), torch_dtype=dtype).to(device).eval())
    for m in (text_encoder, transformer, vae):
        m.requires_grad_(False)
    return Components(path, variant, index, tokenizer, text_encoder, transformer, vae, schedule)
