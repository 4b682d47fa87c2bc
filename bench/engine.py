"""Engine benchmark: the full-size FLUX.2 [klein] 4B and 9B architectures with random weights.

Random weights cost exactly the FLOPs of the real ones, so no download is needed
(engine/tests/fullsize.py holds the real configs).

    engine/.venv/bin/python bench/engine.py --scenarios S2,S5 --out bench/results/DATE-GPU.json
    engine/.venv/bin/python bench/engine.py --scenarios S1,S3 --out bench/results/DATE-GPU.json --merge
    engine/.venv/bin/python bench/engine.py --fidelity --scenarios none --out … --merge
    engine/.venv/bin/python bench/engine.py --go-fast-only --scenarios S2 --out … --merge   # the 12 GiB bound
    engine/.venv/bin/python bench/engine.py --startup --scenarios none --out … --merge
    engine/.venv/bin/python bench/engine.py --config tiny --scenarios S5 --repeats 1        # CPU smoke run
    engine/.venv/bin/python bench/engine.py --config klein-9b --scenarios S2,S1 --out … --merge   # the 9B
    engine/.venv/bin/python bench/engine.py --scenarios S6 --batch 1,2,4 --out … --merge    # throughput by batch size

bench/gpu.sh runs all of it on a lent GPU machine in two prepared runs, and the 9B's S2 and S1
in a third, optional one (see its header). --config klein-9b is the 9B (8 + 24 blocks of 4096,
Qwen3-8B); its rows carry "config": "klein-9b" and merge beside the 4B's (tiny and tiny-9b are
the CPU stand-ins).

Scenarios (1024² unless noted): S1 Segmind defaults (20 steps, cfg 5, euler); S2 native
(4 steps, cfg 1); S3 res_2s, 4 steps; S4 editing with one 1024² reference, 4 steps; S5 512²,
4 steps; S6 throughput of S2 with --batch requests queued (go_fast: one generate_batch,
once per batch size of the list; reference path: one request at a time, once, since it never
batches). Each runs with go_fast off and on (only on with --go-fast-only). The go_fast warm-up of each scenario runs inside the
engine's compile window, so its shapes are compiled, as KLEIN_WARMUP_SIZES does for a server.

Per scenario: ms per image (median), ms per transformer evaluation (denoising time over
evaluations; a CFG step is two, a batch of n is n), text encoding and VAE decode ms, peak
GPU memory (torch.cuda.max_memory_allocated over the measured runs, resident weights
included), achieved TFLOP/s of the denoising, and the ratio to the floor.

FLOP formula per transformer evaluation, L = image + reference + 512 text tokens,
D = hidden size, n = double + single blocks (../shared/reference, §11):
    F = 2·13·D²·n·L  (linear layers: 13·D² MACs per token per block)
      + 4·n·L²·D     (attention: QKᵀ and AV)
      + 2·L·(128·D + D·128) + 2·512·J·D   (embedders and output projection; J = joint_attention_dim,
                                           7680 for the 4B, 12288 for the 9B)
The floor is the transformer FLOPs of the whole image at 790 TFLOP/s (H100/H200 dense bf16);
fp8 matmuls have twice that peak, so go_fast can go below a ratio of 1 on the linear part.

--fidelity: go_fast against the reference path on fixed seeds (engine/tests/fidelity.py):
relative error of the final latents and PSNR of the decoded images, at 1024² and 512².
--startup: saves the random model once in diffusers layout (--model-dir), then times a fresh
`python -m klein_engine generate` from process start to its first image, with an empty
compile cache (cold) and again with the cache it filled (warm).

--out is written after every scenario and section, so a run stopped by a time limit keeps
what it measured. --scale shrinks every size (rehearsals on a CPU: bench/gpu.sh's test).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# engine/ holds the package and its tests' helpers (tests.fullsize, tests.fidelity).
sys.path.insert(0, str(ROOT / "engine"))

from klein_engine.batch import BatchJob  # noqa: E402
from klein_engine.job import GenerateRequest, ReferenceImage  # noqa: E402
from klein_engine.options import EngineOptions  # noqa: E402
from klein_engine.pipeline import KleinEngine  # noqa: E402
from klein_engine.text import MAX_SEQUENCE_LENGTH as TEXT_TOKENS  # noqa: E402
from klein_engine.tiny import ensure_tiny, variant_of  # noqa: E402
from tests.fidelity import FIDELITY_SEEDS, LATENT_REL_TOL, PSNR_MIN_DB, psnr, relative_error  # noqa: E402
from tests.fullsize import build_engine, save_model  # noqa: E402

PEAK_TFLOPS = 790.0

SCENARIOS = {
    "S1": dict(width=1024, height=1024, steps=20, cfg=5.0, sampler="euler", refs=0),
    "S2": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", refs=0),
    "S3": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="res_2s", refs=0),
    "S4": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", refs=1),
    "S5": dict(width=512, height=512, steps=4, cfg=1.0, sampler="euler", refs=0),
    "S6": dict(width=1024, height=1024, steps=4, cfg=1.0, sampler="euler", refs=0, throughput=True),
}


def flops_per_eval(engine: KleinEngine, image_tokens: int) -> float:
    config = engine.components.transformer.config
    d = config.num_attention_heads * config.attention_head_dim
    n = config.num_layers + config.num_single_layers
    seq = image_tokens + TEXT_TOKENS
    return (2 * 13 * d * d * n * seq + 4 * n * seq * seq * d + 2 * seq * (2 * config.in_channels * d)
            + 2 * TEXT_TOKENS * config.joint_attention_dim * d)


def evaluations(scenario: dict) -> int:
    """Transformer evaluations per image (a CFG step is two; res_2s's last step is one)."""
    per_step = 2 if scenario["cfg"] > 1 else 1
    if scenario["sampler"] == "res_2s":
        return per_step * (2 * scenario["steps"] - 1)
    return per_step * scenario["steps"]


_prompts = itertools.count()


def request(scenario: dict, seed: int, go_fast: bool, ref: ReferenceImage | None, prompt: str | None = None) -> GenerateRequest:
    # A new prompt every time by default, so the prompt cache never hides the text encoder's cost.
    return GenerateRequest(prompt=prompt or f"a lighthouse at dusk, oil painting #{next(_prompts)}",
                           negative_prompt="low quality, blurry, less details", seed=seed, cfg=scenario["cfg"],
                           sampler=scenario["sampler"], steps=scenario["steps"], width=scenario["width"],
                           height=scenario["height"], go_fast=go_fast, images=(ref,) if ref else ())


def reference_image(scenario: dict) -> ReferenceImage | None:
    if not scenario["refs"]:
        return None
    g = torch.Generator("cpu").manual_seed(7)
    px = torch.randint(0, 256, (scenario["width"] * scenario["height"] * 3,), generator=g, dtype=torch.uint8)
    return ReferenceImage(scenario["width"], scenario["height"], px.numpy().tobytes())


def _generate(engine: KleinEngine, reqs: list) -> list:
    outs = engine.generate_batch([BatchJob(r) for r in reqs]) if len(reqs) > 1 else [engine.generate(reqs[0], lambda *a: None, lambda: False)]
    for o in outs:
        if isinstance(o, BaseException):
            raise o
    return outs


def run(engine: KleinEngine, name: str, scenario: dict, go_fast: bool, repeats: int, batch: int) -> dict:
    ref = reference_image(scenario)
    cuda = engine.device.type == "cuda"
    # Requests per call: S6 with go_fast is one batch; everything else one request at a time.
    per_call = batch if scenario.get("throughput") and go_fast else 1
    calls = repeats * (batch if scenario.get("throughput") and not go_fast else 1)
    warm = [request(scenario, 500 + k, go_fast, ref) for k in range(per_call)]
    if go_fast:
        with engine.fast.compiling():
            for _ in range(2):  # compile, then (CUDA graphs) record
                _generate(engine, warm)
    else:
        _generate(engine, warm)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timings, walls = [], []
    t0 = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        outs = _generate(engine, [request(scenario, 1000 + i * per_call + k, go_fast, ref) for k in range(per_call)])
        walls.append((time.perf_counter() - t) * 1000)
        timings.append(outs[-1].timings)
    wall = time.perf_counter() - t0
    images = calls * per_call
    tokens = (scenario["width"] // engine.pixel_multiple) * (scenario["height"] // engine.pixel_multiple)
    n_eval = evaluations(scenario)
    f_eval = flops_per_eval(engine, tokens + (tokens if scenario["refs"] else 0))
    denoise = statistics.median(t["denoise_ms"] for t in timings)
    floor_ms = f_eval * n_eval / (PEAK_TFLOPS * 1e12) * 1000
    ms_image = statistics.median(walls) / per_call
    out = {
        "name": name,
        "config": engine.model.removeprefix("random:"),
        "go_fast": go_fast,
        "width": scenario["width"], "height": scenario["height"], "steps": scenario["steps"], "cfg": scenario["cfg"],
        "sampler": scenario["sampler"], "references": scenario["refs"],
        "batch": per_call,
        "ms_per_image": round(ms_image, 2),
        "ms_per_eval": round(denoise / (n_eval * per_call), 3),
        "text_ms": round(statistics.median(t["text_ms"] for t in timings), 2),
        "decode_ms": round(statistics.median(t["decode_ms"] for t in timings), 2),
        "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "tflops": round(f_eval * n_eval * per_call / (denoise / 1000) / 1e12, 2),
        "floor_ms": round(floor_ms, 2),
        "ratio_to_floor": round(ms_image / floor_ms, 2),
        "repeats": calls,
    }
    if scenario.get("throughput"):
        out["images_per_second"] = round(images / wall, 3)
    return out


@torch.inference_mode()  # as the engine's own calls, so the compiled graphs' guards hold
def fidelity(engine: KleinEngine, seeds, scale: float = 1.0) -> dict:
    """go_fast against the reference path: final latents and decoded images, fixed seeds."""
    rows = []
    for size in (scaled(1024, scale), scaled(512, scale)):
        scenario = dict(SCENARIOS["S2"], width=size, height=size)
        for seed in seeds:
            req = request(scenario, seed, True, None, prompt="a lighthouse at dusk, oil painting")
            got = {}
            for go_fast in (False, True):
                with engine.fast.compiling() if go_fast else contextlib.nullcontext():
                    latents = engine.generate(dataclasses.replace(req, go_fast=go_fast), lambda *a: None, lambda: False,
                                              output_type="latent")
                    got[go_fast] = (latents, engine.decode(latents, go_fast))
            rows.append({"size": size, "seed": seed, "latent_rel_error": round(relative_error(got[True][0], got[False][0]), 6),
                         "psnr_db": round(psnr(got[True][1], got[False][1]), 2)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    worst_rel = max(r["latent_rel_error"] for r in rows)
    worst_psnr = min(r["psnr_db"] for r in rows)
    return {"setting": "4 steps, cfg 1, euler", "tolerance": {"latent_rel_error_max": LATENT_REL_TOL, "psnr_db_min": PSNR_MIN_DB},
            "max_latent_rel_error": worst_rel, "min_psnr_db": worst_psnr,
            "within_tolerance": worst_rel <= LATENT_REL_TOL and worst_psnr >= PSNR_MIN_DB, "runs": rows}


_LOADED = re.compile(r"loaded .* in ([0-9.]+) s")
_WARMED = re.compile(r"warmed up .* in ([0-9.]+) s")


def scaled(side: int, scale: float) -> int:
    """A side times `scale`, a multiple of 16 and at least 64 (the engine's rules)."""
    return max(64, int(round(side * scale / 16)) * 16)


def scaled_scenario(scenario: dict, scale: float) -> dict:
    return dict(scenario, width=scaled(scenario["width"], scale), height=scaled(scenario["height"], scale))


def startup(config: str, model_dir: Path, device: str, env_extra: dict, size: int = 1024) -> dict:
    """Process start to first image from a local diffusers-layout directory, cold and warm cache."""
    t = time.perf_counter()
    model_dir = ensure_tiny(variant=variant_of(config)) if config in ("tiny", "tiny-9b") else save_model(config, model_dir, device)
    save_s = time.perf_counter() - t
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # leave the GPU to the process being timed
    cache = Path(tempfile.mkdtemp(prefix="klein-compile-"))
    out = {"model_dir": str(model_dir), "save_s": round(save_s, 1), "size": f"{size}x{size}", "steps": 4, "cfg": 1}
    try:
        for label in ("cold", "warm"):
            path = os.pathsep.join(x for x in (str(ROOT / "engine"), os.environ.get("PYTHONPATH", "")) if x)
            env = dict(os.environ, PYTHONPATH=path, KLEIN_COMPILE_CACHE_DIR=str(cache),
                       KLEIN_WARMUP_SIZES=f"{size}x{size}", PYTHONUNBUFFERED="1", **env_extra)
            png = cache / "first.png"
            cmd = [sys.executable, "-m", "klein_engine", "generate", "--model", str(model_dir), "--prompt", "a lighthouse",
                   "--steps", "4", "--cfg", "1", "--width", str(size), "--height", str(size), "--out", str(png)]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
            first = proc.stdout.readline()
            first_s = time.perf_counter() - t0
            rest, err = proc.communicate(timeout=1800)
            if proc.returncode != 0 or not first.strip():
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
            loaded, warmed = _LOADED.search(err), _WARMED.search(err)
            out[label] = {"first_image_s": round(first_s, 2), "load_s": float(loaded.group(1)) if loaded else None,
                          "warmup_s": float(warmed.group(1)) if warmed else 0.0, "image": json.loads(first)}
            print(json.dumps({label: out[label]}), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


NINE_B = ("klein-9b", "tiny-9b")


def scenario_key(s: dict) -> tuple:
    """What a --merge replaces: the same model, scenario, path, memory mode and batch size."""
    return (s.get("config"), s["name"], s["go_fast"], s.get("mode"), s.get("batch", 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="klein-4b", choices=["klein-4b", "klein-9b", "tiny", "tiny-9b"])
    parser.add_argument("--scenarios", default="S1,S2,S3,S4,S5,S6", help="comma-separated, or 'none'")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", default="4", help="S6: requests queued together; a comma-separated list runs each")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp8", default="auto", choices=["auto", "off", "emulate"])
    parser.add_argument("--act-scale", default="tensor", choices=["tensor", "row"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--compile-mode", default=EngineOptions().compile_mode)
    parser.add_argument("--cache-dir", default=str(ROOT / "engine" / ".cache" / "compile"), help="persistent compile cache")
    parser.add_argument("--go-fast-only", action="store_true", help="KLEIN_GO_FAST_ONLY: fp8 transformer only (the 12 GiB bound)")
    parser.add_argument("--fidelity", action="store_true")
    parser.add_argument("--seeds", type=int, default=len(FIDELITY_SEEDS))
    parser.add_argument("--startup", action="store_true")
    parser.add_argument("--model-dir", default="/tmp/klein-random-4b")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every image side (rehearsals on a CPU)")
    parser.add_argument("--out")
    parser.add_argument("--merge", action="store_true",
                        help="merge into --out (same device): scenarios replaced by (name, go_fast, mode, batch)")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    names = [] if args.scenarios.strip().lower() == "none" else [n.strip() for n in args.scenarios.split(",")]
    for n in names:
        if n not in SCENARIOS:
            parser.error(f"unknown scenario {n}; one of {', '.join(SCENARIOS)}")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        parser.error(f"--batch must be integers, got {args.batch}")
    options = EngineOptions(fp8=args.fp8, fp8_act_scale=args.act_scale, compile=args.compile, compile_mode=args.compile_mode,
                            compile_cache_dir=Path(args.cache_dir), go_fast_only=args.go_fast_only, max_batch=max(1, *batches),
                            warmup_sizes=())
    mode = "go_fast_only" if args.go_fast_only else "both_resident"
    # A GPU machine's copy of the tree may have no git: bench/gpu.sh passes the commit.
    commit = os.environ.get("KLEIN_BENCH_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = ""
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu ({os.cpu_count()} threads)"
    command = "engine/.venv/bin/python bench/engine.py " + " ".join(argv if argv is not None else sys.argv[1:])
    head = {"device": device, "torch": torch.__version__, "commit": commit, "date": dt.date.today().isoformat(), "config": args.config}
    if args.scale != 1.0:
        head["scale"] = args.scale
    if args.out and args.merge and Path(args.out).exists():
        out = json.loads(Path(args.out).read_text())
        if out.get("device") != device:
            parser.error(f"--merge: {args.out} was measured on {out.get('device')}, this is {device}")
        out["commands"] = out.get("commands", [out.get("command")]) + [command]
        # The file's `config` names the 4B it measures; the 9B's rows say their own.
        if args.config in NINE_B and out.get("config"):
            head["config"] = out["config"]
        out.update(head, command=command)
    else:
        out = {**head, "command": command, "scenarios": []}

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    def add(row: dict) -> None:
        out["scenarios"] = [s for s in out.get("scenarios", []) if scenario_key(s) != scenario_key(row)] + [row]
        save()

    if names or args.fidelity:
        t = time.perf_counter()
        engine = build_engine(args.config, args.device, options)
        engine_key = f"engine_{mode}" + ("_9b" if args.config in NINE_B else "")
        out[engine_key] = {"build_s": round(time.perf_counter() - t, 1), "config": args.config, "facts": engine.facts()}
        print(json.dumps(out[engine_key]), file=sys.stderr, flush=True)
        save()
        for name in names:
            scenario = scaled_scenario(SCENARIOS[name], args.scale)
            for go_fast in ((True,) if args.go_fast_only else (False, True)):
                # The reference path never batches: its S6 is measured once, one request at a time.
                for batch in (batches if go_fast or not scenario.get("throughput") else [1]):
                    r = run(engine, name, scenario, go_fast, args.repeats, batch)
                    r["mode"] = mode
                    r["compile_mode"] = engine.fast.compile_mode
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    add(r)
        if args.fidelity:
            seeds = FIDELITY_SEEDS[: args.seeds] if args.seeds <= len(FIDELITY_SEEDS) else range(args.seeds)
            out["fidelity"] = fidelity(engine, seeds, args.scale)
            save()
        del engine
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.startup:
        env_extra = {"KLEIN_FP8": args.fp8, "KLEIN_COMPILE": args.compile, "KLEIN_COMPILE_MODE": args.compile_mode}
        if args.device == "cpu":
            env_extra["CUDA_VISIBLE_DEVICES"] = ""
        out["startup"] = startup(args.config, Path(args.model_dir), args.device, env_extra, scaled(1024, args.scale))
        save()
    save()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
