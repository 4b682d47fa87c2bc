"""Engine options: read once from the environment, every bad value named at start."""

from pathlib import Path

import pytest

from klein_engine.job import LoadError
from klein_engine.options import EngineOptions, parse_sizes


def test_defaults():
    o = EngineOptions.from_env({})
    assert (o.go_fast_only, o.fp8, o.fp8_act_scale, o.compile, o.compile_mode, o.max_batch, o.offload, o.attention) == (
        False, "auto", "tensor", "auto", "default", 1, "none", "auto")
    assert o.warmup_sizes == ((1024, 1024),)
    assert o.compile_cache_dir.parts[-2:] == ("klein", "compile")


def test_values_are_read():
    o = EngineOptions.from_env({"KLEIN_GO_FAST_ONLY": "1", "KLEIN_FP8": "emulate", "KLEIN_FP8_ACT_SCALE": "row", "KLEIN_COMPILE": "off",
                                "KLEIN_COMPILE_MODE": "reduce-overhead", "KLEIN_WARMUP_SIZES": "1024x1024, 512x768,1024x1024",
                                "KLEIN_COMPILE_CACHE_DIR": "/tmp/kc", "KLEIN_MAX_BATCH": "4", "KLEIN_OFFLOAD": "model"})
    assert o.go_fast_only and o.fp8 == "emulate" and o.fp8_act_scale == "row" and o.compile == "off"
    assert o.compile_mode == "reduce-overhead" and o.warmup_sizes == ((1024, 1024), (512, 768))
    assert o.compile_cache_dir == Path("/tmp/kc") and o.max_batch == 4 and o.offload == "model"
    assert parse_sizes("none") == ()


@pytest.mark.parametrize("env,name", [
    ({"KLEIN_FP8": "fast"}, "KLEIN_FP8"),
    ({"KLEIN_MAX_BATCH": "0"}, "KLEIN_MAX_BATCH"),
    ({"KLEIN_MAX_BATCH": "two"}, "KLEIN_MAX_BATCH"),
    ({"KLEIN_WARMUP_SIZES": "1024"}, "KLEIN_WARMUP_SIZES"),
    ({"KLEIN_GO_FAST_ONLY": "maybe"}, "KLEIN_GO_FAST_ONLY"),
    ({"KLEIN_GO_FAST_ONLY": "1", "KLEIN_FP8": "off"}, "KLEIN_GO_FAST_ONLY"),
    ({"KLEIN_COMPILE_MODE": "fastest"}, "KLEIN_COMPILE_MODE"),
    ({"KLEIN_OFFLOAD": "all"}, "KLEIN_OFFLOAD"),
])
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(LoadError, match=name):
        EngineOptions.from_env(env)
