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
