"""Sampler convergence on a velocity field with a known exact solution, through `step`, the
one sampler entry the pipeline calls."""

import math

import torch

from klein_engine.sampling import res_2s_coefficients, step
from klein_engine.schedule import Schedule
from klein_engine.tiny import SCHEDULER_CONFIG

A = 1.3
FLUX2 = Schedule(SCHEDULER_CONFIG)


def velocity(x, i, sigma):
    # dx/dσ = A·cos(σ)·x  ⇒  x(σ) = x(1)·exp(A·(sin σ − sin 1)).
    return A * math.cos(float(sigma)) * x


def exact(x1, sigma):
    return x1 * math.exp(A * (math.sin(sigma) - math.sin(1.0)))


def integrate(sampler, x, sigmas, v):
    """The whole schedule, one `step` at a time, as the pipeline's denoising loop runs it."""
    for i in range(len(sigmas) - 1):
        x, _ = step(sampler, x, sigmas, i, v)
    return x


def run(sampler, n, end=0.2):
    sig = torch.tensor([1.0 + (end - 1.0) * k / n for k in range(n + 1)], dtype=torch.float64)
    x = torch.tensor([1.0], dtype=torch.float64)
    out = integrate(sampler, x, sig, velocity)
    return abs(out.item() - exact(1.0, end))


def test_euler_is_first_order():
    ratios = [run("euler", n) / run("euler", 2 * n) for n in (8, 16, 32)]
    for r in ratios:
        assert 1.8 < r < 2.2, ratios


def test_res_2s_is_second_order():
    ratios = [run("res_2s", n) / run("res_2s", 2 * n) for n in (8, 16, 32)]
    for r in ratios:
        assert 3.5 < r < 4.5, ratios
    assert run("res_2s", 16) < run("euler", 16) / 10


def test_res_2s_equals_euler_when_both_stages_agree():
    # A velocity field whose denoised estimate D = x − σ·v is the same everywhere: D ≡ c.
    c = torch.tensor([0.3, -0.7], dtype=torch.float64)

    def v(x, i, sigma):
        return (x - c) / float(sigma)

    sig = FLUX2.sigmas(6, 4096).to(torch.float64)
    x0 = torch.tensor([1.5, 2.0], dtype=torch.float64)
    a = integrate("euler", x0, sig, v)
    b = integrate("res_2s", x0, sig, v)
    assert torch.equal(a, b) or (a - b).abs().max().item() < 1e-12


def test_res_2s_last_step_takes_the_denoised_estimate():
    calls = []

    def v(x, i, sigma):
        calls.append(float(sigma))
        return x * 0.5

    sig = torch.tensor([1.0, 0.5, 0.0])
    x0 = torch.tensor([2.0])
    out = integrate("res_2s", x0, sig, v)
    assert len(calls) == 3  # 2 evaluations, then 1 for the final step
    x1 = out  # x at σ=0 is D1 = x − σ·v at σ=0.5
    assert x1.shape == x0.shape


def test_coefficients_match_the_reference_table():
    # ../shared/reference: at 1024², 4 steps, h·φ2/c2 = 0.0328, 0.0619, 0.1595 and σ2 = 0.9836, 0.9373, 0.8347.
    s = [float(v) for v in FLUX2.sigmas(4, 4096)]
    got = [res_2s_coefficients(s[i], s[i + 1]) for i in range(3)]
    for (sigma2, corr), (want_s2, want_c) in zip(got, [(0.9836, 0.0328), (0.9373, 0.0619), (0.8347, 0.1595)]):
        assert abs(sigma2 - want_s2) < 6e-4 and abs(corr - want_c) < 6e-4
