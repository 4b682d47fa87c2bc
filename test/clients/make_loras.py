"""Writes seeded random LoRA files for the `tiny` miniatures, for the LoRA end-to-end test
(test/e2e/loras.test.ts): usage `make_loras.py OUT_DIR`. Uses the engine's own test layouts
(engine/tests/lora_files.py): `fox.safetensors` (ai-toolkit layout, seed 1) and
`kohya.safetensors` (kohya layout, seed 2) fit `tiny`; `nine.safetensors` is drawn for
`tiny-9b`, whose layers are wider, so it does not fit `tiny`."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "engine"), str(ROOT / "engine" / "tests")]

import torch  # noqa: E402

from klein_engine.load import load_components  # noqa: E402
from lora_files import layout, random_adapter, write  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tiny = load_components("tiny", "cpu", torch.float32).transformer
    write(out, "fox", layout(tiny, random_adapter(tiny, seed=1), "ai-toolkit"))
    write(out, "kohya", layout(tiny, random_adapter(tiny, seed=2), "kohya", alpha=2.0))
    nine = load_components("tiny-9b", "cpu", torch.float32).transformer
    write(out, "nine", layout(nine, random_adapter(nine, seed=3), "ai-toolkit"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
