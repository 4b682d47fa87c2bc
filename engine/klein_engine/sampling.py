"""Samplers for flow matching, as pure functions of a velocity callable, one step at a time.

`velocity(x, i, sigma) -> v` is the model (with CFG already applied); x is the packed latent.
Flow matching: x(σ) = (1 − σ)·x0 + σ·noise, dx/dσ = v, denoised estimate D = x − σ·v.
The σ schedule itself comes from the model's scheduler config (schedule.py); a sampler may
add to it (`sampler_sigmas`: res_2s's σ_min).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Velocity = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


def comfy_flux_sigma_min(shift: float = 2.02, timesteps: int = 10000) -> float:
    """`model_sampling.sigma_min` of a FLUX model in ComfyUI, as its ModelSamplingFlux computes it
    (comfy/model_sampling.py: `flux_time_shift(shift, 1.0, arange(1, timesteps + 1) / timesteps)[0]`,
    in float32). ComfyUI runs FLUX.2, klein included, as `Flux2` with `sampling_settings =
    {"shift": 2.02}` (comfy/supported_models.py)."""
    t = torch.arange(1, timesteps + 1, 1) / timesteps
    return float((math.exp(shift) / (math.exp(shift) + (1 / t - 1) ** 1.0))[0])


# The σ_min RES4LYF inserts before the final 0 for FLUX.2 [klein]: ComfyUI's, ≈ 7.5334e-4.
RES4LYF_SIGMA_MIN = comfy_flux_sigma_min()


def _work(x: torch.Tensor) -> torch.Tensor:
    """x in the precision the update is computed in: float32 for the model's float32 or bfloat16
    latents (as diffusers' scheduler does), float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def euler_step(x: torch.Tensor, sigmas: torch.Tensor, i: int, velocity: Velocity) -> tuple[torch.Tensor, torch.Tensor]:
    """One flow-matching Euler step: x ← x + (σ_next − σ)·v, computed in float32 and cast back
    to the velocity's dtype (as the diffusers scheduler does). Returns (x_next, denoised)."""
    s, s_next = sigmas[i], sigmas[i + 1]
    v = velocity(x, i, s)
    xw = _work(x)
    vw = v.to(xw.dtype)
    denoised = xw - s * vw
    x = (xw + (s_next - s) * vw).to(v.dtype)
    return x, denoised


def res_2s_sigmas(sigmas: torch.Tensor, sigma_min: float = RES4LYF_SIGMA_MIN) -> torch.Tensor:
    """The schedule res_2s runs, as RES4LYF's `RK_NoiseSampler.prepare_sigmas` makes it from
    `[s_0 … s_{N-1}, 0]` (beta/rk_noise_sampler_beta.py at 022c873): σ_min is inserted before
    the 0, `[s_0 … s_{N-1}, σ_min, 0]`, so the last step is a full 2-stage step to σ_min; if
    s_{N-1} is already below σ_min it is replaced by σ_min; within 1e-4 of it nothing is
    inserted (the step to 0 is then not taken, res_2s_step). Repeated σs are dropped first."""
    keep = torch.cat([torch.tensor([True]), torch.diff(sigmas.cpu()) != 0]).to(sigmas.device)
    s = sigmas[keep].clone()
    if len(s) < 2 or float(s[-1]) != 0.0:
        return s
    smin = torch.tensor([sigma_min], dtype=s.dtype, device=s.device)
    if float(s[-2]) < sigma_min:
        s[-2] = smin[0]
    elif abs(float(s[-2]) - sigma_min) > 1e-4:
        s = torch.cat([s[:-1], smin, s[-1:]])
    return s


def res_2s_coefficients(sigma: float, sigma_next: float, c2: float = 0.5):
    """(σ2, correction) for one RES 2-stage step from σ to σ_next > 0: the stage-2 point
    σ2 = σ·e^(−c2·h) and the weight h·φ2(−h)/c2 = (e^(−h) − 1 + h)/(h·c2) of (D2 − D1),
    with h = ln(σ/σ_next). RES4LYF's tableau (beta/rk_coefficients_beta.py, case "res_2s"):
    c = [0, c2], a21 = c2·φ1(−c2·h), b2 = φ2(−h)/c2, b1 = φ1(−h) − b2, stages
    x_i = x0 + h·Σ a_ij (D_j − x0) and x' = x0 + h·Σ b_j (D_j − x0); written here as the flow
    Euler step plus h·b2·(D2 − D1), which is the same sum."""
    h = math.log(sigma / sigma_next)
    sigma2 = sigma * math.exp(-c2 * h)
    correction = (math.expm1(-h) + h) / (h * c2)
    return sigma2, correction


def res_2s_step(
    x: torch.Tensor, sigmas: torch.Tensor, i: int, velocity: Velocity, c2: float = 0.5,
    sigma_min: float = RES4LYF_SIGMA_MIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step i of RES4LYF's deterministic 2-stage exponential integrator (`res_2s` with eta 0,
    i.e. `res_2s_ode`, c2 = 0.5) on a schedule made by res_2s_sigmas:

        D1 = x − σ·v(x, σ)
        x2 = x + (σ2 − σ)·v1                       (exact flow step to σ2 = σ·e^(−c2·h))
        D2 = x2 − σ2·v(x2, σ2)
        x' = x + (σ' − σ)·v1 + (e^(−h) − 1 + h)/(h·c2) · (D2 − D1)

    Every step takes both evaluations, the last one (to σ_min) included. After that last step
    RES4LYF ends without another model call (beta/rk_sampler_beta.py, after the loop):
    eps = (x − x')/(σ − σ_min) and the result is ComfyUI's flow `calculate_denoised(σ_min, eps,
    x') = x' − σ_min·eps`. A step to σ = 0 (only when σ_min was not inserted) is not taken,
    as RES4LYF's loop stops before it. RES4LYF's default "bongmath" (RK_Method_Beta.bong_iter,
    which re-derives x0 from the stage states) is the identity here: without noise the stages
    are exactly x0 + h·Σ a_ij·ε_j. Returns (x_next, the step's denoised estimate).
    """
    s, s_next = float(sigmas[i]), float(sigmas[i + 1])
    if s_next <= 0.0:
        return x, _work(x)
    v1 = velocity(x, i, sigmas[i])
    xw = _work(x)
    v1w = v1.to(xw.dtype)
    d1 = xw - s * v1w
    sigma2, corr = res_2s_coefficients(s, s_next, c2)
    x2 = (xw + (sigma2 - s) * v1w).to(v1.dtype)
    # On the schedule's device: the model turns σ into its timestep embedding on the GPU.
    v2 = velocity(x2, i, torch.tensor(sigma2, dtype=torch.float32, device=sigmas.device))
    d2 = _work(x2) - sigma2 * v2.to(xw.dtype)
    x_next = xw + (s_next - s) * v1w + corr * (d2 - d1)
    last = i + 2 == len(sigmas) - 1 and float(sigmas[-1]) == 0.0 and s_next == sigma_min
    if last:
        eps = (xw - x_next) / (s - s_next)
        x_next = x_next - s_next * eps
        return x_next.to(v1.dtype), x_next
    return x_next.to(v1.dtype), d2


# The samplers a request may name (limits.SAMPLERS), each as one step at a time, so a batch
# can change between steps, and the schedule each runs on.
STEPS = {"euler": euler_step, "res_2s": res_2s_step}
SCHEDULES = {"euler": lambda sigmas: sigmas, "res_2s": res_2s_sigmas}


def sampler_sigmas(sampler: str, sigmas: torch.Tensor) -> torch.Tensor:
    """The schedule `sampler` runs on, made from the model's `[s_0 … s_{N-1}, 0]`: the pipeline
    takes N steps on it, step(…, i, …) for i < N."""
    try:
        return SCHEDULES[sampler](sigmas)
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; one of {', '.join(STEPS)}") from None


def step(sampler: str, x: torch.Tensor, sigmas: torch.Tensor, i: int, velocity: Velocity) -> tuple[torch.Tensor, torch.Tensor]:
    """Step i of `sampler` from sigmas[i] to sigmas[i + 1] (sigmas from sampler_sigmas):
    returns (x_next, denoised)."""
    try:
        fn = STEPS[sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; one of {', '.join(STEPS)}") from None
    return fn(x, sigmas, i, velocity)
