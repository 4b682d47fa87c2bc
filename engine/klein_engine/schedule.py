"""The σ schedule of a model, from its `scheduler/scheduler_config.json` (load.py reads it).

Computed as diffusers' Flux2KleinPipeline computes it (its step "6. Prepare timesteps"):
`sigmas = linspace(1, 1/N, N)` (none when the config sets `use_flow_sigmas`),
`mu = compute_empirical_mu(image tokens, N)`, then `retrieve_timesteps(scheduler, …)` on the
model's own FlowMatchEulerDiscreteScheduler, which applies what its config says: `shift`, or
with `use_dynamic_shifting` the time shift of `time_shift_type` (exponential or linear) by mu,
`shift_terminal`, Karras/exponential/beta spacing; then the terminal 0. The pipeline's
functions and the scheduler class are called, not copied, so the schedule is diffusers'
bit for bit. Like the pipeline, it takes mu from compute_empirical_mu, not from the config's
`base_shift`/`max_shift` (FLUX.1's resolution rule, which Flux2KleinPipeline does not use).

Two settings change what a step is rather than the σs, and our samplers do not implement
them, so a config that sets them is refused at load: `stochastic_sampling` (noise re-injected
in the scheduler's step) and `invert_sigmas` (a schedule that rises to 1, for Mochi).
"""

from __future__ import annotations

import numpy as np
import torch

from .job import LoadError

SCHEDULER_CLASS = "FlowMatchEulerDiscreteScheduler"
UNSUPPORTED = {
    "stochastic_sampling": "re-injects noise in the scheduler's step, which the engine's samplers do not",
    "invert_sigmas": "makes the schedule rise to 1 (a Mochi setting), which no klein sampler runs",
}


class Schedule:
    """The model's scheduler config and the σ schedule it gives for a size and step count."""

    def __init__(self, config: dict, source: str = "scheduler config"):
        name = config.get("_class_name", SCHEDULER_CLASS)
        if name != SCHEDULER_CLASS:
            raise LoadError(f"{source}: the scheduler is {name}; FLUX.2 [klein] models use {SCHEDULER_CLASS}")
        for key, why in UNSUPPORTED.items():
            if config.get(key):
                raise LoadError(f"{source}: {key} is set; it {why}. Remove it from the config")
        self.config = dict(config)
        self.source = source
        try:
            self._scheduler()
        except (ValueError, TypeError, ImportError) as e:
            raise LoadError(f"{source}: {e}") from None

    def _scheduler(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        # A fresh scheduler per schedule: set_timesteps mutates it, and it costs microseconds.
        return FlowMatchEulerDiscreteScheduler.from_config(self.config)

    def sigmas(self, num_steps: int, image_seq_len: int) -> torch.Tensor:
        """`[σ_0 … σ_{N-1}, 0]` as float32 on the CPU, exactly what Flux2KleinPipeline's scheduler
        holds after its step 6 for `image_seq_len` image tokens and `num_steps` steps."""
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, retrieve_timesteps

        if num_steps < 1:
            raise ValueError("num_steps must be at least 1")
        scheduler = self._scheduler()
        sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
        if hasattr(scheduler.config, "use_flow_sigmas") and scheduler.config.use_flow_sigmas:
            sigmas = None
        mu = compute_empirical_mu(image_seq_len=image_seq_len, num_steps=num_steps)
        retrieve_timesteps(scheduler, num_steps, "cpu", sigmas=sigmas, mu=mu)
        return scheduler.sigmas
