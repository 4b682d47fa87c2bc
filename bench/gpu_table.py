"""The README's GPU figures from a bench/engine.py results file (bench/gpu.sh writes one).

    python3 bench/gpu_table.py bench/results/DATE-GPU.json                 # the table, to stdout
    python3 bench/gpu_table.py bench/results/DATE-GPU.json --readme README.md

With --readme the part of README.md between the two markers below is replaced by the table
(and nothing else is touched); running it again with the same file changes nothing.
Standard library only, so it runs with any python3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BEGIN = "<!-- gpu-results:begin (written by bench/gpu_table.py from bench/results/*.json; edit the script, not this part) -->"
END = "<!-- gpu-results:end -->"

TITLES = {
    "S1": "S1 Segmind defaults: 20 steps, cfg 5",
    "S2": "S2 native: 4 steps, cfg 1",
    "S3": "S3 res_2s, 4 steps",
    "S4": "S4 editing, one 1024² reference",
    "S5": "S5 512², 4 steps",
    "S6": "S6 throughput of S2",
}


def _num(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def is_9b(row: dict) -> bool:
    """A row of the 9B (bench/engine.py --config klein-9b, or its CPU stand-in tiny-9b)."""
    return str(row.get("config", "")).endswith("9b")


def _row(rows: list, name: str, go_fast: bool, batch: int = 1, mode: str = "both_resident"):
    for r in rows:
        if (r["name"], r["go_fast"], r.get("batch", 1), r.get("mode", "both_resident")) == (name, go_fast, batch, mode):
            return r
    return None


def _scenario_lines(rows: list, names: tuple, label: str = "scenario") -> list:
    lines = [
        f"| {label} | go_fast off: ms/image | go_fast on: ms/image | speed-up | on: ms/eval | on: TFLOP/s | on: × floor | peak GiB off / on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        off, on = _row(rows, name, False), _row(rows, name, True)
        if off is None and on is None:
            lines.append(f"| {TITLES[name]} | not measured | | | | | | |")
            continue
        speedup = f"{off['ms_per_image'] / on['ms_per_image']:.2f}×" if off and on else "—"
        lines.append(
            f"| {TITLES[name]} | {_num(off and off['ms_per_image'])} | {_num(on and on['ms_per_image'])} | {speedup} | "
            f"{_num(on and on['ms_per_eval'], 2)} | {_num(on and on['tflops'])} | {_num(on and on['ratio_to_floor'], 2)} | "
            f"{_num(off and off['peak_vram_gib'], 2)} / {_num(on and on['peak_vram_gib'], 2)} |"
        )
    return lines


def table(data: dict) -> str:
    everything = data.get("scenarios", [])
    rows = [r for r in everything if not is_9b(r)]
    nine = [r for r in everything if is_9b(r)]
    env = data.get("environment", {})
    scale = f", sizes scaled by {data['scale']}" if data.get("scale") else ""
    lines = [
        f"{data.get('config', 'klein-4b')} (random weights, real shapes) on **{data.get('device', '?')}**, torch "
        f"{data.get('torch', env.get('torch', '?'))}, diffusers {env.get('diffusers', '?')}, commit {data.get('commit') or '?'}, "
        f"{data.get('date', '?')}{scale} ([{Path(data.get('_file', 'results.json')).name}](bench/results/{Path(data.get('_file', 'results.json')).name})). "
        "Medians; 1024² unless noted; ms per evaluation and TFLOP/s are of the denoising; the floor is the "
        "transformer's FLOPs at 790 TFLOP/s.",
        "",
    ]
    lines += _scenario_lines(rows, ("S1", "S2", "S3", "S4", "S5"))
    # The 9B (random weights, real shapes: 8 + 24 blocks of 4096, Qwen3-8B), S2 and S1 only:
    # bench/gpu.sh's optional third run.
    if nine:
        lines += [""] + _scenario_lines(nine, ("S1", "S2"), f"{nine[0]['config']} scenario")
    s6 = sorted((r for r in rows if r["name"] == "S6" and r.get("mode", "both_resident") == "both_resident"),
                key=lambda r: (r["go_fast"], r.get("batch", 1)))
    lines += ["", "| S6: S2's requests queued together | batch | images/s | ms/image | peak GiB |", "|---|---|---|---|---|"]
    if not s6:
        lines.append("| not measured | | | | |")
    for r in s6:
        path = "go_fast, one generate_batch" if r["go_fast"] else "reference path, one at a time"
        lines.append(f"| {path} | {r.get('batch', 1)} | {_num(r.get('images_per_second'), 2)} | {_num(r['ms_per_image'])} | "
                     f"{_num(r['peak_vram_gib'], 2)} |")
    lines.append("")
    fid = data.get("fidelity")
    if fid:
        tol = fid["tolerance"]
        verdict = "within" if fid["within_tolerance"] else "**outside**"
        lines.append(f"- Fidelity ({fid['setting']}, {len(fid['runs'])} runs over seeds and sizes): worst relative error of the "
                     f"final latents {fid['max_latent_rel_error']:.4f} (bound {tol['latent_rel_error_max']}), worst PSNR "
                     f"{fid['min_psnr_db']:.1f} dB (bound {tol['psnr_db_min']}): {verdict} the stated tolerance.")
    else:
        lines.append("- Fidelity: not measured.")
    if not nine:
        lines.append("- klein-9b: not measured (`bash bench/gpu.sh device 3`, optional).")
    only = _row(rows, "S2", True, 1, "go_fast_only")
    if only:
        lines.append(f"- `KLEIN_GO_FAST_ONLY=1` (S2, fp8 transformer only): peak {_num(only['peak_vram_gib'], 2)} GiB "
                     f"(goal: 12 GiB), {_num(only['ms_per_image'])} ms per image.")
    else:
        lines.append("- `KLEIN_GO_FAST_ONLY=1` memory: not measured.")
    st = data.get("startup")
    if st and "cold" in st and "warm" in st:
        lines.append(f"- Start-up, process start to the first {st['size']} image from a local directory: cold compile cache "
                     f"{_num(st['cold']['first_image_s'])} s (load {_num(st['cold']['load_s'])} s, warm-up "
                     f"{_num(st['cold']['warmup_s'])} s), warm cache {_num(st['warm']['first_image_s'])} s.")
    else:
        lines.append("- Start-up: not measured.")
    for run in data.get("gpu_runs", []):
        for step in run.get("steps", []):
            if step["step"] == "tests":
                lines.append(f"- GPU tests (`engine/tests/test_gpu_fast.py`): {step.get('summary') or step['state']}.")
        bad = [s for s in run.get("steps", []) if s.get("state") != "ok"]
        if bad:
            lines.append(f"- Run `{run['run']}`: " + "; ".join(f"{s['step']} {s['state']}" for s in bad) + ".")
    commands = [c for c in data.get("commands", [data.get("command")]) if c]
    if commands:
        runs = "`1`, `2` and `3`" if nine else "`1` and `2`"
        lines.append(f"- Made by `bash bench/gpu.sh device` {runs}, which ran: " + "; ".join(f"`{c}`" for c in commands) + ".")
    return "\n".join(lines) + "\n"


def write_readme(readme: Path, text: str) -> bool:
    """Replaces what lies between the markers; returns whether the file changed."""
    old = readme.read_text()
    if BEGIN not in old or END not in old:
        raise SystemExit(f"{readme}: the markers are missing:\n{BEGIN}\n{END}")
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{text}{END}{tail}"
    if new != old:
        readme.write_text(new)
    return new != old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args(argv)
    data = json.loads(args.results.read_text())
    data["_file"] = str(args.results)
    text = table(data)
    if args.readme:
        changed = write_readme(args.readme, text)
        print(f"{args.readme}: {'updated' if changed else 'unchanged'}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
