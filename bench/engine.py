"""Engine benchmark: the full-size FLUX.2 [klein] 4B architecture with random weights.

Random weights cost exactly the FLOPs of the real ones, so no download is needed. The
real configs are written out below (transformer and VAE from the model's diffusers
configs, the text encoder from Qwen3-4B's). The tokenizer is the tiny model's: prompts are
padded to 512 tokens either way, so the text encoder's work is the same.

    engine/.venv/bin/python bench/engine.py [--out bench/results/DATE-GPU.json] [--repeats 5]
    engine/.venv/bin/python bench/engine.py --config tiny --scenarios S5 --repeats 1   # CPU smoke run

Scenarios (1024² unless noted): S1 Segmind defaults (20 steps, cfg 5, euler); S2 native
(4 steps, cfg 1); S3 res_2s, 4 steps; S4 editing with one 1024² reference, 4 steps; S5 512²,
4 steps; S6 throughput of S2 with several requests back to back. Each runs with go_fast
off and on.

FLOP formula per transformer evaluation, L = image + reference + 512 text tokens,
D = hidden size, n = double + single blocks (../shared/reference, §11):
    F = 2·13·D²·n·L  (linear layers: 13·D² MACs per token per block)
      + 4·n·L²·D     (attention: QKᵀ and AV)
      + 2·L·(128·D + D·128) + 2·512·7680·D   (embedders and output projection)
A step with CFG is two evaluations (one batch-2 forward). The floor is the transformer
FLOPs of the whole image at 790 TFLOP/s (H100/H200 dense bf16).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "engine"))

from klein_engine.job import GenerateRequest, ReferenceImage  # noqa: E402
from klein_engine.load import Components  # noqa: E402
from klein_engine.pipeline import KleinEngine  # noqa: E402
from klein_engine.tiny import ensure_tiny  # noqa: E402

PEAK_TFLOPS = 790.0
TEXT_TOKENS = 512

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

SCENARIOS = {
    "S1": dict(width=1024, height=1024, steps=20, cfg=5.0, sampler="euler", refs=0),
    "S2": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", refs=0),
    "S3": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="res_2s", refs=0),
    "S4": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", refs=1),
    "S5": dict(width=512, height=512, steps=4, cfg=1.0, sampler="euler", refs=0),
    "S6": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", refs=0, throughput=True),
}


def build_engine(config: str, device: str) -> KleinEngine:
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tiny = ensure_tiny()
    if config == "tiny":
        from klein_engine.load import load_components

        return KleinEngine("tiny", load_components(str(tiny), device, dtype), device, dtype)
    cfg = CONFIGS[config]
    tok = AutoTokenizer.from_pretrained(str(tiny / "tokenizer"))
    torch.manual_seed(0)
    with torch.device(device):
        text = Qwen3ForCausalLM(Qwen3Config(**cfg["text"], pad_token_id=0)).to(dtype).eval()
        transformer = Flux2Transformer2DModel(**cfg["transformer"]).to(dtype).eval()
        vae = AutoencoderKLFlux2(**cfg["vae"]).to(dtype).eval()
    for m in (text, transformer, vae):
        m.requires_grad_(False)
    comps = Components(path=tiny, variant="distilled", model_index={"is_distilled": True}, tokenizer=tok,
                       text_encoder=text, transformer=transformer, vae=vae)
    return KleinEngine(f"random:{config}", comps, device, dtype)


def flops_per_eval(engine: KleinEngine, image_tokens: int) -> float:
    c = engine.c.transformer.config
    d = c.num_attention_heads * c.attention_head_dim
    n = c.num_layers + c.num_single_layers
    seq = image_tokens + TEXT_TOKENS
    return 2 * 13 * d * d * n * seq + 4 * n * seq * seq * d + 2 * seq * (2 * c.in_channels * d) + 2 * TEXT_TOKENS * c.joint_attention_dim * d


def evaluations(s: dict) -> int:
    per_step = 2 if s["cfg"] > 1 else 1
    if s["sampler"] == "res_2s":
        return per_step * (2 * s["steps"] - 1)
    return per_step * s["steps"]


_prompts = itertools.count()


def request(s: dict, i: int, go_fast: bool, ref: ReferenceImage | None) -> GenerateRequest:
    # A new prompt every time, so the prompt cache never hides the text encoder's cost.
    return GenerateRequest(prompt=f"a lighthouse at dusk, oil painting #{next(_prompts)}", negative_prompt="low quality, blurry, less details",
                           seed=1000 + i, cfg=s["cfg"], sampler=s["sampler"], steps=s["steps"], width=s["width"], height=s["height"],
                           go_fast=go_fast, images=(ref,) if ref else ())


def run(engine: KleinEngine, name: str, s: dict, go_fast: bool, repeats: int) -> dict:
    ref = None
    if s["refs"]:
        g = torch.Generator("cpu").manual_seed(7)
        ref = ReferenceImage(s["width"], s["height"], torch.randint(0, 256, (s["width"] * s["height"] * 3,), generator=g, dtype=torch.uint8).numpy().tobytes())
    cuda = engine.device.type == "cuda"
    engine.generate(request(s, -1, go_fast, ref), lambda *a: None, lambda: False)  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    results = []
    t0 = time.perf_counter()
    for i in range(repeats):
        t = time.perf_counter()
        r = engine.generate(request(s, i, go_fast, ref), lambda *a: None, lambda: False)
        results.append(((time.perf_counter() - t) * 1000, r.timings))
    wall = time.perf_counter() - t0
    tokens = (s["width"] // 16) * (s["height"] // 16)
    ref_tokens = tokens if s["refs"] else 0
    n_eval = evaluations(s)
    denoise = statistics.median(t["denoise_ms"] for _, t in results)
    f_eval = flops_per_eval(engine, tokens + ref_tokens)
    floor_ms = f_eval * n_eval / (PEAK_TFLOPS * 1e12) * 1000
    ms_image = statistics.median(ms for ms, _ in results)
    out = {
        "name": name,
        "go_fast": go_fast,
        "width": s["width"], "height": s["height"], "steps": s["steps"], "cfg": s["cfg"], "sampler": s["sampler"], "references": s["refs"],
        "ms_per_image": round(ms_image, 2),
        "ms_per_eval": round(denoise / n_eval, 3),
        "text_ms": round(statistics.median(t["text_ms"] for _, t in results), 2),
        "decode_ms": round(statistics.median(t["decode_ms"] for _, t in results), 2),
        "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "tflops": round(f_eval * n_eval / (denoise / 1000) / 1e12, 2),
        "floor_ms": round(floor_ms, 2),
        "ratio_to_floor": round(ms_image / floor_ms, 2),
        "repeats": repeats,
    }
    if s.get("throughput"):
        out["images_per_second"] = round(repeats / wall, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="klein-4b", choices=["klein-4b", "tiny"])
    p.add_argument("--scenarios", default="S1,S2,S3,S4,S5,S6")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out")
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    engine = build_engine(a.config, a.device)
    scenarios = []
    for name in a.scenarios.split(","):
        for go_fast in (False, True):
            s = SCENARIOS[name]
            r = run(engine, name, s, go_fast, a.repeats * (3 if s.get("throughput") else 1))
            print(json.dumps(r), file=sys.stderr, flush=True)
            scenarios.append(r)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    device = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"cpu ({os.cpu_count()} threads)"
    result = {
        "device": device,
        "torch": torch.__version__,
        "commit": commit,
        "date": dt.date.today().isoformat(),
        "command": "engine/.venv/bin/python bench/engine.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": a.config,
        "scenarios": scenarios,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
