"""bench/gpu.sh rehearsed on this machine's CPU, so the script a GPU session runs as it is cannot
break unseen: KLEIN_GPU_REHEARSAL=1 runs its `device` half with the tiny model, the local
engine/.venv and every size scaled by 1/8 (emulated fp8, so go_fast really differs). The three
runs (1, then 2 and the optional 3 merging into the same file) must leave every section of
the results file — S1–S5 with go_fast off and on, S6 at batch 1, 2 and 4, the fidelity
figures, the go_fast-only memory run, start-up cold and warm, the 9B's S2 and S1 (tiny-9b
standing in for klein-9b), each step's outcome — the README table, and the files
the run tool brings back. `prepare` is checked offline: the 64 MiB it may carry and the
`run` calls it prints. The figures themselves are the GPU's to measure."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.sh"


def device(tmp_path: Path, what: str, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, OUT=str(tmp_path / f"out-{what}"), KLEIN_GPU_RESULTS_DIR=str(tmp_path / "results"),
                KLEIN_GPU_REHEARSAL="1", KLEIN_GPU_DATE="2000-01-01", KLEIN_GPU_PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), "device", what], cwd=ROOT, env=full, capture_output=True, text=True, timeout=900)


def test_the_device_runs_write_every_section_and_the_readme_table(tmp_path):
    for run in ("1", "2", "3"):
        p = device(tmp_path, run)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    result = tmp_path / "results" / "2000-01-01-cpu-tiny.json"
    r = json.loads(result.read_text())
    assert {"device", "torch", "commit", "command", "commands", "scenarios", "environment", "gpu_runs", "scale"} <= set(r)
    assert r["environment"]["diffusers"] == "0.42.1" and len(r["commands"]) == 6
    assert r["config"] == "tiny"  # the file's config stays the 4B's; the 9B's rows name theirs

    rows = {(s["config"], s["name"], s["go_fast"], s["batch"], s["mode"]): s for s in r["scenarios"]}
    both = [("tiny", n, g, 1, "both_resident") for n in ("S1", "S2", "S3", "S4", "S5") for g in (False, True)]
    s6 = [("tiny", "S6", False, 1, "both_resident")] + [("tiny", "S6", True, b, "both_resident") for b in (1, 2, 4)]
    nine = [("tiny-9b", n, g, 1, "both_resident") for n in ("S1", "S2") for g in (False, True)]
    assert sorted(rows) == sorted(both + s6 + nine + [("tiny", "S2", True, 1, "go_fast_only")])
    for s in rows.values():
        assert {"ms_per_image", "ms_per_eval", "text_ms", "decode_ms", "peak_vram_gib", "tflops", "ratio_to_floor"} <= set(s)
        assert s["ms_per_image"] > 0 and s["ms_per_eval"] > 0 and s["text_ms"] > 0
        assert (s["width"], s["height"]) == ((64, 64) if s["name"] == "S5" else (128, 128))  # 1024² and 512², scaled
    assert all(rows[k]["images_per_second"] > 0 for k in s6)

    f = r["fidelity"]
    assert f["within_tolerance"] is True and 0 < f["max_latent_rel_error"] < f["tolerance"]["latent_rel_error_max"]
    assert r["engine_both_resident"]["facts"]["fast"]["fp8"] == "emulated"
    assert r["engine_go_fast_only"]["facts"]["fast"]["reference_path"] is False
    assert r["engine_both_resident_9b"]["facts"]["model"] == "tiny-9b"
    assert r["engine_both_resident_9b"]["facts"]["fast"]["fp8"] == "emulated"
    for label in ("cold", "warm"):
        run = r["startup"][label]
        assert 0 < run["load_s"] < run["first_image_s"] and (run["image"]["width"], run["image"]["height"]) == (128, 128)

    steps = {run["run"]: [(s["step"], s["state"]) for s in run["steps"]] for run in r["gpu_runs"]}
    assert steps == {"1": [("fast", "ok"), ("batches", "ok"), ("tests", "ok")],
                     "2": [("more", "ok"), ("go_fast_only", "ok"), ("startup", "ok")], "3": [("nine_b", "ok")]}
    tests = next(s for s in r["gpu_runs"][0]["steps"] if s["step"] == "tests")
    assert "skipped" in tests["summary"]  # no CUDA here: the GPU tests skip, and say so

    # What comes back from each run: at most 8 files, the results and the table among them.
    for run in ("1", "2", "3"):
        files = sorted(x.name for x in (tmp_path / f"out-{run}").iterdir() if x.is_file())
        assert files == sorted(["2000-01-01-cpu-tiny.json", "gpu-table.md", f"gpu-{run}.log", f"gpu-{run}-steps.jsonl"])
    # Before run 3 the 9B is one line that says it was not measured; after it, its table.
    assert "- klein-9b: not measured" in (tmp_path / "out-2" / "gpu-table.md").read_text()
    table = (tmp_path / "out-3" / "gpu-table.md").read_text()
    for text in ("S1 Segmind defaults", "S5 512²", "| go_fast, one generate_batch | 4 |", "within the stated tolerance",
                 "KLEIN_GO_FAST_ONLY=1", "Start-up", "GPU tests", "| tiny-9b scenario |", "`1`, `2` and `3`"):
        assert text in table, text
    assert "not measured" not in table

    # The README's part between the markers is replaced, and only it; a second pass changes nothing.
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    before = readme.read_text()
    table_cmd = [sys.executable, str(ROOT / "bench" / "gpu_table.py"), str(result), "--readme", str(readme)]
    subprocess.run(table_cmd, check=True, capture_output=True)
    after = readme.read_text()
    assert after != before and "| S6: S2's requests queued together |" in after
    start, end = after.index("<!-- gpu-results:begin"), after.index("<!-- gpu-results:end -->")
    assert before[: before.index("<!-- gpu-results:begin")] == after[:start]
    assert before[before.index("<!-- gpu-results:end -->"):] == after[end:]
    subprocess.run(table_cmd, check=True, capture_output=True)
    assert readme.read_text() == after


def test_a_step_that_does_not_fit_the_budget_is_recorded_not_run(tmp_path):
    p = device(tmp_path, "startup", KLEIN_GPU_BUDGET_S="30")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads((tmp_path / "results" / "2000-01-01-cpu-tiny.json").read_text())
    [step] = r["gpu_runs"][0]["steps"]
    assert step["step"] == "startup" and step["state"].startswith("skipped:")
    assert "startup" not in r and "Start-up: not measured" in (tmp_path / "out-startup" / "gpu-table.md").read_text()


def test_prepare_checks_what_a_call_carries_and_prints_the_run_calls(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    env = dict(os.environ, KLEIN_GPU_WHEEL_DIR=str(wheels))
    prepare = ["bash", str(SCRIPT), "prepare", "--no-download"]
    p = subprocess.run(prepare, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "lacks diffusers==0.42.1" in p.stderr
    wheel = wheels / "diffusers-0.42.1-py3-none-any.whl"
    wheel.write_bytes(b"0" * 1024)
    p = subprocess.run(prepare, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for part in ("1", "2", "3"):
        assert f'bash bench/gpu.sh device {part}", carry=["{wheels}"], timeout_s=570)' in p.stdout
    with open(wheel, "r+b") as fh:
        fh.truncate(65 * 2**20)  # sparse: 65 MiB in size, nothing written
    p = subprocess.run(prepare, cwd=ROOT, env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "more than 64 MiB" in p.stderr
