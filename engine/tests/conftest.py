import os
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*accelerate.*")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_path():
    from klein_engine.tiny import ensure_tiny

    return ensure_tiny(seed=0, variant="distilled")


@pytest.fixture(scope="session")
def tiny_base_path():
    from klein_engine.tiny import ensure_tiny

    return ensure_tiny(seed=0, variant="base")


@pytest.fixture(scope="session")
def tiny_9b_path():
    from klein_engine.tiny import ensure_tiny

    return ensure_tiny(seed=0, variant="9b")


@pytest.fixture(scope="session")
def engine(tiny_path):
    from klein_engine.pipeline import KleinEngine

    return KleinEngine.load(str(tiny_path), device="cpu")


def request(**kw):
    from klein_engine.job import GenerateRequest

    base = dict(prompt="a lighthouse at dusk", negative_prompt="low quality", seed=7, cfg=1.0, sampler="euler",
                steps=3, width=64, height=64)
    base.update(kw)
    return GenerateRequest(**base)


def noop_step(step, total, preview):
    pass


def never():
    return False
