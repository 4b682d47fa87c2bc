"""Samplers for flow matching, as pure functions of a velocity callable (the σ schedule comes
from the model's scheduler config, schedule.py).

`velocity(x, i, sigma) -> v` is the model (with CFG already applied); x is the packed latent.
Flow matching: x(σ) = (1 − σ)·x0 + σ·noise, dx/dσ = v, denoised estimate D = x − σ·v.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


def euler_step(x: torch.Tensor, sigmas: torch.Tensor, i: int, velocity: Velocity) -> tuple[torch.Tensor, torch.Tensor]:
    """One flow-matching Euler step: x ← x + (σ_next − σ)·v, computed in float32 and cast back
    to the velocity's dtype (as the diffusers scheduler does). Returns (x_next, denoised)."""
    s, s_next = sigmas[i], sigmas[i + 1]
    v = velocity(x, i, s)
    denoised = x.float() - s * v.float()
    x = (x.float() + (s_next - s) * v.float()).to(v.dtype)
    return x, denoised


def res_2s_coefficients(sigma: float, sigma_next: float, c2: float = 0.5):
    """(σ2, correction) for one RES 2-stage step from σ to σ_next > 0: the stage-2 point
    σ2 = σ·e^(−c2·h) and the weight h·φ2(−h)/c2 = (e^(−h) − 1 + h)/(h·c2) of (D2 − D1),
    with h = ln(σ/σ_next) (RES4LYF `res_2s`, deterministic)."""
    h = math.log(sigma / sigma_next)
    sigma2 = sigma * math.exp(-c2 * h)
    correction = (math.expm1(-h) + h) / (h * c2)
    return sigma2, correction


def res_2s_step(
    x: torch.Tensor, sigmas: torch.Tensor, i: int, velocity: Velocity, c2: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the 2-stage exponential integrator of RES4LYF (`res_2s`, eta = 0, c2 = 0.5):

        D1 = x − σ·v(x, σ)
        x2 = x + (σ2 − σ)·v1                       (exact flow step to σ2 = σ·e^(−c2·h))
        D2 = x2 − σ2·v(x2, σ2)
        x' = x + (σ' − σ)·v1 + (e^(−h) − 1 + h)/(h·c2) · (D2 − D1)

    The first two terms are the Euler step, so it reduces to Euler when D2 = D1. The last
    step to σ = 0 (h = ∞) takes the first stage's denoised estimate D1 (one evaluation).
    Returns (x_next, the last denoised estimate).
    """
    s, s_next = float(sigmas[i]), float(sigmas[i + 1])
    v1 = velocity(x, i, sigmas[i])
    xf = x.float()
    d1 = xf - s * v1.float()
    if s_next <= 0.0:
        return d1.to(v1.dtype), d1
    sigma2, corr = res_2s_coefficients(s, s_next, c2)
    x2 = (xf + (sigma2 - s) * v1.float()).to(v1.dtype)
    # On the schedule's device: the model turns σ into its timestep embedding on the GPU.
    v2 = velocity(x2, i, torch.tensor(sigma2, dtype=torch.float32, device=sigmas.device))
    d2 = x2.float() - sigma2 * v2.float()
    x = (xf + (s_next - s) * v1.float() + corr * (d2 - d1)).to(v1.dtype)
    return x, d2


# The samplers a request may name (limits.SAMPLERS), each as one step at a time, so a batch
# can change between steps.
STEPS = {"euler": euler_step, "res_2s": res_2s_step}


def step(sampler: str, x: torch.Tensor, sigmas: torch.Tensor, i: int, velocity: Velocity) -> tuple[torch.Tensor, torch.Tensor]:
    """Step i of `sampler` from sigmas[i] to sigmas[i + 1]: returns (x_next, denoised)."""
    try:
        fn = STEPS[sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; one of {', '.join(STEPS)}") from None
    return fn(x, sigmas, i, velocity)
