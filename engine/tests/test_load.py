"""Loading: tiny round-trips through disk; broken directories give one clear message."""

import hashlib
import shutil
from pathlib import Path

import pytest

from klein_engine.job import LoadError
from klein_engine.load import load_components, resolve_model
from klein_engine.pipeline import KleinEngine
from klein_engine.tiny import build_tiny

from .conftest import never, noop_step, request


def digest_tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_builds_identical_files(tmp_path):
    a = build_tiny(tmp_path / "a", seed=3)
    b = build_tiny(tmp_path / "b", seed=3)
    c = build_tiny(tmp_path / "c", seed=4)
    da, db, dc = digest_tree(a), digest_tree(b), digest_tree(c)
    assert da == db
    assert da["transformer/diffusion_pytorch_model.safetensors"] != dc["transformer/diffusion_pytorch_model.safetensors"]


def test_tiny_round_trips_through_disk(tmp_path):
    path = build_tiny(tmp_path / "m", seed=0)
    engine = KleinEngine.load(str(path), device="cpu")
    facts = engine.facts()
    assert facts["variant"] == "distilled"
    assert facts["geometry"]["pixel_multiple"] == 16  # read from the VAE and patch configs
    res = engine.generate(request(), noop_step, never)
    assert len(res.rgb) == 64 * 64 * 3


def test_tiny_reads_the_configured_layers():
    import json

    from klein_engine.tiny import ensure_tiny

    cfg = json.loads((ensure_tiny() / "text_encoder" / "config.json").read_text())
    assert cfg["num_hidden_layers"] >= 28


def test_missing_component_gives_a_clear_message(tmp_path, tiny_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_path, broken)
    shutil.rmtree(broken / "transformer")
    with pytest.raises(LoadError, match=r"transformer/ is missing .*diffusers-layout"):
        load_components(str(broken), "cpu", None)


def test_missing_weights_and_corrupt_weights(tmp_path, tiny_path):
    import torch

    partial = tmp_path / "partial"
    shutil.copytree(tiny_path, partial)
    (partial / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(LoadError, match=r"vae/ .* no \.safetensors weights.*download the model again"):
        load_components(str(partial), "cpu", torch.float32)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_path, corrupt)
    w = corrupt / "transformer" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
    with pytest.raises(LoadError, match=r"cannot load transformer/ .*corrupt or partial"):
        load_components(str(corrupt), "cpu", torch.float32)


def test_nonexistent_directory_and_unreachable_hub():
    with pytest.raises(LoadError, match="does not exist"):
        resolve_model("/nonexistent/klein")
    # This machine cannot reach the hub: the message must say what to do instead.
    with pytest.raises(LoadError, match=r"KLEIN_MODEL"):
        resolve_model("black-forest-labs/FLUX.2-klein-4B-not-a-repo")
