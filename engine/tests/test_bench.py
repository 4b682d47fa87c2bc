"""bench/engine.py runs end to end (on the tiny model here; the full-size numbers need a GPU)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_and_reports_every_field(tmp_path):
    out = tmp_path / "r.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), "--config", "tiny", "--scenarios", "S5", "--repeats", "1",
                    "--device", "cpu", "--out", str(out)], check=True, capture_output=True, timeout=600)
    r = json.loads(out.read_text())
    assert {"device", "torch", "commit", "command", "scenarios"} <= set(r)
    assert [(s["name"], s["go_fast"]) for s in r["scenarios"]] == [("S5", False), ("S5", True)]
    for s in r["scenarios"]:
        assert {"name", "go_fast", "ms_per_image", "ms_per_eval", "peak_vram_gib", "tflops"} <= set(s)
        assert s["ms_per_image"] > 0 and s["ms_per_eval"] > 0 and s["text_ms"] > 0


def bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("klein_bench_engine", ROOT / "bench" / "engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_throughput_fidelity_and_merge_on_tiny(tmp_path):
    """What the GPU session will run, in miniature: S6 as one generate_batch, the fidelity
    section (emulated fp8, so go_fast really differs), merged into an existing result file."""
    bench = bench_module()
    out = tmp_path / "r.json"
    common = ["--config", "tiny", "--device", "cpu", "--repeats", "1", "--out", str(out)]
    assert bench.main(common + ["--scenarios", "S5"]) == 0
    assert bench.main(common + ["--scenarios", "S6", "--batch", "2", "--fp8", "emulate", "--fidelity", "--seeds", "1", "--merge"]) == 0
    r = json.loads(out.read_text())
    assert [(s["name"], s["go_fast"], s["batch"]) for s in r["scenarios"]] == [("S5", False, 1), ("S5", True, 1), ("S6", False, 1), ("S6", True, 2)]
    assert all(s["images_per_second"] > 0 for s in r["scenarios"] if s["name"] == "S6")
    f = r["fidelity"]
    assert [(x["size"], x["seed"]) for x in f["runs"]] == [(1024, 0), (512, 0)]
    assert 0 < f["max_latent_rel_error"] < f["tolerance"]["latent_rel_error_max"] and f["within_tolerance"] is True
    assert len(r["commands"]) == 2 and r["engine_both_resident"]["facts"]["fast"]["fp8"] == "emulated"


def test_startup_is_timed_cold_and_warm_on_tiny(tmp_path):
    bench = bench_module()
    s = bench.startup("tiny", tmp_path / "unused", "cpu", {"CUDA_VISIBLE_DEVICES": ""})
    for label in ("cold", "warm"):
        run = s[label]
        assert run["first_image_s"] > 0 and run["load_s"] is not None and run["load_s"] < run["first_image_s"]
        assert (run["image"]["width"], run["image"]["height"]) == (1024, 1024)
