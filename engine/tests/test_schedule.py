"""The σ schedule comes from the model's scheduler/scheduler_config.json: each setting checked
against its formula written out here, and broken or unsupported configs refused at load."""

import json
import math
import shutil

import numpy as np
import pytest

from klein_engine.job import LoadError
from klein_engine.load import load_components, read_schedule
from klein_engine.schedule import Schedule
from klein_engine.tiny import SCHEDULER_CONFIG


def base_sigmas(n):
    # Flux2KleinPipeline's `np.linspace(1.0, 1 / N, N)`, which the scheduler takes as float32.
    return np.linspace(1.0, 1 / n, n).astype(np.float32).astype(np.float64)


def empirical_mu(tokens, n):
    # BFL sampling.py / diffusers compute_empirical_mu.
    a1, b1, a2, b2 = 8.73809524e-05, 1.89833333, 0.00016927, 0.45666666
    if tokens > 4300:
        return a2 * tokens + b2
    m200, m10 = a2 * tokens + b2, a1 * tokens + b1
    a = (m200 - m10) / 190.0
    return a * n + (m200 - 200.0 * a)


def check(schedule, want, n):
    got = schedule.sigmas(n, 4096).tolist()
    assert got[-1] == 0.0 and len(got) == n + 1
    assert got[:-1] == pytest.approx(list(want), rel=2e-6, abs=1e-7)


def test_flux2_config_gives_the_published_schedule():
    s = Schedule(SCHEDULER_CONFIG)
    assert empirical_mu(4096, 4) == pytest.approx(2.2912, abs=1e-4)
    assert s.sigmas(4, 4096).tolist() == pytest.approx([1.0, 0.9674, 0.9081, 0.7672, 0.0], abs=1e-4)
    for n in (1, 4, 20, 50):
        mu = empirical_mu(4096, n)
        check(s, math.exp(mu) / (math.exp(mu) + (1 / base_sigmas(n) - 1)), n)


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.5])
def test_static_shift(shift):
    s = Schedule({**SCHEDULER_CONFIG, "use_dynamic_shifting": False, "shift": shift})
    t = base_sigmas(8)
    check(s, shift * t / (1 + (shift - 1) * t), 8)


def test_linear_time_shift():
    s = Schedule({**SCHEDULER_CONFIG, "time_shift_type": "linear"})
    mu = empirical_mu(4096, 6)
    check(s, mu / (mu + (1 / base_sigmas(6) - 1)), 6)


def test_shift_terminal_stretches_the_end():
    s = Schedule({**SCHEDULER_CONFIG, "shift_terminal": 0.1})
    mu = empirical_mu(4096, 5)
    shifted = math.exp(mu) / (math.exp(mu) + (1 / base_sigmas(5) - 1))
    one_minus = 1 - shifted
    check(s, 1 - one_minus / (one_minus[-1] / (1 - 0.1)), 5)


@pytest.mark.parametrize("change,message", [
    ({"_class_name": "EulerDiscreteScheduler"}, "FlowMatchEulerDiscreteScheduler"),
    ({"stochastic_sampling": True}, "stochastic_sampling"),
    ({"invert_sigmas": True}, "invert_sigmas"),
    ({"time_shift_type": "cubic"}, "time_shift_type"),
])
def test_unsupported_configs_are_refused(change, message):
    with pytest.raises(LoadError, match=message):
        Schedule({**SCHEDULER_CONFIG, **change})


def test_the_model_directory_is_read(tmp_path, tiny_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_path, model)
    config = model / "scheduler" / "scheduler_config.json"
    assert read_schedule(model).sigmas(4, 4096).tolist() == Schedule(SCHEDULER_CONFIG).sigmas(4, 4096).tolist()
    config.write_text(json.dumps({**json.loads(config.read_text()), "use_dynamic_shifting": False, "shift": 2.0}))
    t = base_sigmas(4)
    check(read_schedule(model), 2.0 * t / (1 + t), 4)

    config.write_text("{not json")
    with pytest.raises(LoadError, match="not valid JSON"):
        load_components(str(model), "cpu", None)
    config.unlink()
    with pytest.raises(LoadError, match=r"scheduler/scheduler_config.json is missing"):
        load_components(str(model), "cpu", None)
