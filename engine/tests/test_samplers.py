"""Samplers through `step`, the one sampler entry the pipeline calls: convergence on velocity
fields with known exact solutions, and res_2s step by step against an independent
implementation of RES4LYF's tableau, its last step to σ_min included."""

import math

import numpy as np
import pytest
import torch
from mpmath import exp as mp_exp
from mpmath import factorial, mp, mpf

from klein_engine.sampling import RES4LYF_SIGMA_MIN, res_2s_coefficients, res_2s_sigmas, sampler_sigmas, step
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
    """The whole schedule as the pipeline's denoising loop runs it: N steps on the sampler's
    schedule (res_2s adds its σ_min)."""
    n = len(sigmas) - 1
    sigmas = sampler_sigmas(sampler, sigmas)
    for i in range(n):
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
    # A velocity field whose denoised estimate D = x − σ·v is the same everywhere: D ≡ c, so
    # both reach c exactly, res_2s through σ_min and its final denoise.
    c = torch.tensor([0.3, -0.7], dtype=torch.float64)

    def v(x, i, sigma):
        return (x - c) / float(sigma)

    sig = FLUX2.sigmas(6, 4096).to(torch.float64)
    x0 = torch.tensor([1.5, 2.0], dtype=torch.float64)
    a = integrate("euler", x0, sig, v)
    b = integrate("res_2s", x0, sig, v)
    assert (a - c).abs().max().item() < 1e-12
    # res_2s hands the model its midpoint σ2 in float32, as a timestep: D2 = c to ~1e-8 of σ2.
    assert (b - c).abs().max().item() < 1e-8


# ------------------------------------------------------------------ the schedule res_2s runs on

def test_sigma_min_is_comfyuis_for_flux2():
    # ComfyUI's ModelSamplingFlux with FLUX.2's shift 2.02 over 10,000 timesteps:
    # σ_min = e^2.02 / (e^2.02 + 9999), computed there in float32 (reference §9b: 7.533399e-4).
    want = math.exp(2.02) / (math.exp(2.02) + 9999)
    assert abs(RES4LYF_SIGMA_MIN - want) < 1e-10
    assert float(np.float32(RES4LYF_SIGMA_MIN)) == RES4LYF_SIGMA_MIN
    assert abs(RES4LYF_SIGMA_MIN - 7.533399e-4) < 1e-10


def test_res_2s_schedule_inserts_sigma_min_before_zero():
    s = FLUX2.sigmas(4, 4096)
    r = res_2s_sigmas(s)
    assert r.dtype == s.dtype and len(r) == 6
    assert torch.equal(r[:4], s[:4]) and float(r[4]) == RES4LYF_SIGMA_MIN and float(r[5]) == 0.0
    # A last σ below σ_min is replaced by it; one within 1e-4 of it is kept, with nothing inserted.
    low = torch.tensor([1.0, 0.5, 1e-4, 0.0])
    assert res_2s_sigmas(low).tolist() == pytest.approx([1.0, 0.5, RES4LYF_SIGMA_MIN, 0.0], rel=1e-7)
    near = torch.tensor([1.0, 0.5, RES4LYF_SIGMA_MIN + 5e-5, 0.0])
    assert torch.equal(res_2s_sigmas(near), near)
    # Repeated σs are dropped first, as prepare_sigmas does.
    assert len(res_2s_sigmas(torch.tensor([1.0, 1.0, 0.5, 0.0]))) == 4
    # Euler runs the model's schedule as it is.
    assert torch.equal(sampler_sigmas("euler", s), s)


# ---------------------------------------------------- RES4LYF's res_2s, written independently

mp.dps = 80  # RES4LYF evaluates φ with mpmath at 80 digits (phi_functions.phi_mpmath_series)


def phi(j: int, neg_h: float) -> float:
    z = mpf(neg_h)
    return float((mp_exp(z) - sum(z**k / factorial(k) for k in range(j))) / z**j)


def res_2s_tableau(h: float, c2: float = 0.5):
    """rk_coefficients_beta.py, case "res_2s": c = [0, c2], a21 = c2·φ1(−c2·h) (Phi(h, c)(1, 2)),
    b2 = φ2(−h)/c2, b1 = φ1(−h) − b2."""
    b2 = phi(2, -h) / c2
    return [[0.0, 0.0], [c2 * phi(1, -h * c2), 0.0]], [phi(1, -h) - b2, b2], [0.0, c2]


def tableau_step(x0, sigma, sigma_next, v, c2=0.5):
    """One explicit exponential RK step in RES4LYF's form (RK_Method_Exponential with eta 0 and
    its default anchor): h = −ln(σ_next/σ), stage σs σ·e^(−c_i·h), ε_j = D_j − x0,
    x_i = x0 + h·Σ_j a_ij·ε_j, x_next = x0 + h·Σ_j b_j·ε_j. Also returns the model calls."""
    h = -math.log(sigma_next / sigma)
    a, b, c = res_2s_tableau(h, c2)
    eps, calls = [], []
    for i in range(len(c)):
        s_i = sigma * math.exp(-c[i] * h)
        x_i = x0 + h * sum(a[i][j] * eps[j] for j in range(i))
        calls.append(s_i)
        eps.append((x_i - s_i * v(x_i, s_i)) - x0)
    return x0 + h * sum(b[j] * eps[j] for j in range(len(c))), calls


def field(x, sigma):
    """A non-linear velocity field; σ passes through float32, as the model's timestep does."""
    s = float(np.float32(float(sigma)))
    return torch.sin(3.0 * x) * (1.0 + s) - 0.7 * x + 0.2 * s


@pytest.mark.parametrize("steps,tokens", [(4, 4096), (4, 1024), (9, 6000)])
def test_every_res_2s_step_matches_the_tableau_the_last_included(steps, tokens):
    base = FLUX2.sigmas(steps, tokens)
    ours_sigmas = sampler_sigmas("res_2s", base)
    # RES4LYF's schedule, written out: σ_min inserted before the final 0.
    theirs_sigmas = [float(s) for s in base[:-1]] + [RES4LYF_SIGMA_MIN, 0.0]
    assert [float(s) for s in ours_sigmas] == theirs_sigmas

    ours_calls = []

    def v(x, i, sigma):
        ours_calls.append(float(sigma))
        return field(x, sigma)

    x = torch.linspace(-2.0, 2.0, 33, dtype=torch.float64)
    for i in range(steps):
        theirs, calls = tableau_step(x, theirs_sigmas[i], theirs_sigmas[i + 1], field)
        if i == steps - 1:
            # After the loop: eps = (x_0 − x_next)/(σ − σ_min), x = x_next − σ_min·eps.
            theirs = theirs - RES4LYF_SIGMA_MIN * (x - theirs) / (theirs_sigmas[i] - RES4LYF_SIGMA_MIN)
        n = len(ours_calls)
        ours, _ = step("res_2s", x, ours_sigmas, i, v)
        assert len(ours_calls) - n == 2, f"step {i} takes both stages"
        assert ours_calls[n:] == pytest.approx(calls, rel=1e-7)
        err = (ours - theirs).abs().max().item()
        assert err < 1e-12, f"step {i} of {steps}: {err:.3e}"
        x = ours
    assert len(ours_calls) == 2 * steps


# ------------------------------------------ order over the whole schedule, σ_min and all

SD = 0.5


def gaussian_flow(x, i, sigma):
    """The exact flow-matching ODE for data ~ N(0, SD²): x(σ) = x(1)·√((1−σ)²·SD² + σ²)."""
    s = float(sigma)
    return x * (s - (1 - s) * SD**2) / ((1 - s) ** 2 * SD**2 + s**2)


def gaussian_exact(sigma):
    return math.sqrt((1 - sigma) ** 2 * SD**2 + sigma**2)


def test_res_2s_is_second_order_over_the_whole_schedule():
    """From σ = 1 to 0 on klein's schedule, the σ_min step and the final denoise included. At
    4608 image tokens (1024×1152) the time shift does not depend on the step count
    (compute_empirical_mu above 4300 tokens), so doubling N refines one family of grids."""
    errors = {}
    for n in (16, 32, 64, 128):
        x = integrate("res_2s", torch.tensor([1.0], dtype=torch.float64), FLUX2.sigmas(n, 4608).to(torch.float64), gaussian_flow)
        errors[n] = abs(x.item() - gaussian_exact(0.0))
    orders = [math.log2(errors[n] / errors[2 * n]) for n in (16, 32, 64)]
    print("res_2s errors", {n: f"{e:.3e}" for n, e in errors.items()}, "orders", [f"{o:.2f}" for o in orders])
    assert min(orders) >= 1.9, orders


def test_coefficients_match_the_reference_table():
    # ../shared/reference: at 1024², 4 steps, h·φ2/c2 = 0.0328, 0.0619, 0.1595 and σ2 = 0.9836, 0.9373, 0.8347.
    s = [float(v) for v in FLUX2.sigmas(4, 4096)]
    got = [res_2s_coefficients(s[i], s[i + 1]) for i in range(3)]
    for (sigma2, corr), (want_s2, want_c) in zip(got, [(0.9836, 0.0328), (0.9373, 0.0619), (0.8347, 0.1595)]):
        assert abs(sigma2 - want_s2) < 6e-4 and abs(corr - want_c) < 6e-4
