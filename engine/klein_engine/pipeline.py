"""KleinEngine: FLUX.2 [klein] generation with our own sampling loop.

Same numerics as diffusers' Flux2KleinPipeline (proven on `tiny` in tests/test_parity.py),
plus what a server needs: true CFG batched as one batch-2 forward on any variant, res_2s,
cancellation between steps, progress with cheap previews, per-stage timings, a prompt cache,
the go_fast path (fast/), batches of compatible go_fast requests (batch.py), and LoRA
adapters per request (lora/: unfused deltas hooked on for the batch, base weights untouched).

`generate_batch` is the one generation path (`generate` runs a batch of one), written as the
numbered steps of Flux2KleinPipeline.__call__; the denoising loop's batch and the model as a
velocity field are in denoising.py. Flux2KleinPipeline's static helpers (position ids,
(un)patchify, (un)pack) are called, not copied.
"""

from __future__ import annotations

import logging
import contextlib
import math
import re
import time
from typing import Optional, Sequence

import numpy as np
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline
from diffusers.utils.torch_utils import randn_tensor

from .batch import BatchJob, shape_key
from .denoising import ModelVelocity, RunningBatch
from .fast.compile import StaticCompiled
from .fast.path import FastPath
from .job import Cancelled, GenerateRequest, GenerateResult, InvalidInput, OnDone, OnStep, Preview, ReferenceImage, ShouldStop
from .limits import MAX_LORA_SCALE, MAX_LORAS, MAX_REFERENCE_IMAGES, MAX_SIDE, MAX_STEPS, MIN_SIDE, SAMPLERS
from .lora import FORMATS as LORA_FORMATS
from .lora import LoraStore, applied, linear_dims, place
from .load import Components, load_components
from .messages import EngineFacts
from .offload import Placement
from .options import EngineOptions
from .reproducible import deterministic_reference_path, pin_cpu_threads, reference_flags
from .sampling import sampler_sigmas, step
from .text import MAX_SEQUENCE_LENGTH, TextEncoder

log = logging.getLogger("klein_engine")

PREVIEW_MAX_SIDE = 256
# Warm-up: steps per request (each shape needs a few calls: compile, CUDA-graph record, replay).
WARMUP_STEPS = 2
WARMUP_RUNS = 2
OUTPUT_TYPES = ("rgb", "latent")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class KleinEngine:
    def __init__(self, model: str, components: Components, device: str, dtype: torch.dtype, text_cache: int = 64,
                 options: Optional[EngineOptions] = None):
        self.model = model
        self.components = components
        self.device = torch.device(device)
        # Same bytes on any number of CPU cores (reproducible.py).
        pin_cpu_threads(self.device)
        self.dtype = dtype
        self.options = options or EngineOptions()
        self.max_batch = self.options.max_batch
        placement = Placement(components.text_encoder, self.device, self.options.offload)
        self.text = TextEncoder(components.tokenizer, components.text_encoder, cache_size=text_cache, placement=placement)
        vae_config = components.vae.config
        self.vae_scale = 2 ** (len(vae_config.block_out_channels) - 1)
        patch = vae_config.patch_size
        self.patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.pixel_multiple = self.vae_scale * self.patch
        self.latent_channels = components.transformer.config.in_channels
        if components.transformer.config.joint_attention_dim != self.text.width:
            raise InvalidInput(
                f"transformer expects text features of width {components.transformer.config.joint_attention_dim}, "
                f"the text encoder gives {self.text.width}: the components do not belong together"
            )
        bn = components.vae.bn
        self.bn_mean = bn.running_mean.view(1, -1, 1, 1)
        self.bn_std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + vae_config.batch_norm_eps)
        self.preview_map = self._fit_preview_map()
        sizes = self.options.warmup_sizes or ((1024, 1024),)
        warm_tokens = max(w * h for w, h in sizes) // self.pixel_multiple**2 + MAX_SEQUENCE_LENGTH
        # With KLEIN_GO_FAST_ONLY=1 components.transformer is quantised in place: the only transformer.
        self.fast = FastPath.build(components.transformer, components.vae, self.device, self.options, warm_tokens=warm_tokens)
        # Adapters are checked against the transformer that is always resident (with
        # KLEIN_GO_FAST_ONLY=1 the fp8 one: same module names and shapes).
        self.loras = LoraStore(lambda key, fmt, layers: place(key, fmt, layers, components.transformer, self.device, self.dtype),
                               capacity=self.options.lora_cache_adapters)
        self.lora_dims = linear_dims(components.transformer)

    # ------------------------------------------------------------------ setup
    @classmethod
    def load(cls, model: str, device: Optional[str] = None, options: Optional[EngineOptions] = None) -> "KleinEngine":
        device = device or default_device()
        options = options or EngineOptions.from_env()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        components = load_components(model, device, dtype,
                                     text_device="cpu" if options.offload == "model" else None,
                                     transformer_device="cpu" if options.go_fast_only else None)
        return cls(model, components, device, dtype, options=options)

    def facts(self) -> EngineFacts:
        return {
            "model": self.model,
            "variant": self.components.variant,
            "device": str(self.device) if self.device.type != "cuda" else f"cuda:{self.device.index or 0}",
            "dtype": str(self.dtype).replace("torch.", ""),
            "capabilities": {
                "samplers": list(SAMPLERS),
                "max_reference_images": MAX_REFERENCE_IMAGES,
                # True only where the fast path (fp8, compiled kernels, attention kernel)
                # exists: on a CPU it changes nothing.
                "go_fast": self.fast.active,
                "preview": True,
                "max_batch": self.max_batch,
                "loras": {"max": MAX_LORAS, "formats": list(LORA_FORMATS), "dims": self.lora_dims},
            },
            "geometry": {"pixel_multiple": self.pixel_multiple, "min_side": MIN_SIDE, "max_side": MAX_SIDE},
            "fast": {**self.fast.facts(), "warmup_sizes": [f"{w}x{h}" for w, h in self.options.warmup_sizes] if self.fast.compiled else [],
                     "offload": self.options.offload},
        }

    def warm_up(self) -> float:
        """Compiles the go_fast path for every KLEIN_WARMUP_SIZES size, with and without CFG,
        for each batch size up to max_batch (nothing to do when nothing is compiled).
        Returns the seconds it took."""
        if not self.fast.compiled:
            return 0.0
        t0 = time.perf_counter()
        with self.fast.compiling():
            for w, h in self.options.warmup_sizes:
                for cfg in (1.0, 2.0):
                    for b in range(1, self.max_batch + 1):
                        jobs = [BatchJob(GenerateRequest(prompt=f"warm-up {k}", negative_prompt="warm-up", seed=k, cfg=cfg,
                                                         sampler="euler", steps=WARMUP_STEPS, width=w, height=h, go_fast=True))
                                for k in range(b)]
                        t = time.perf_counter()
                        for _ in range(WARMUP_RUNS):
                            for out in self.generate_batch(jobs):
                                if isinstance(out, BaseException):
                                    raise out
                        log.info("warm-up %dx%d cfg %s batch %d: %.1f s", w, h, cfg > 1, b, time.perf_counter() - t)
        return time.perf_counter() - t0

    # ------------------------------------------------------------- generation
    def generate(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop, output_type: str = "rgb"):
        """One request, as a batch of one: its GenerateResult (output_type "latent": its final
        latents, see generate_batch). Raises the EngineError it ended with."""
        outcome = self.generate_batch([BatchJob(req, on_step, should_stop)], output_type=output_type)[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @torch.inference_mode()
    @deterministic_reference_path  # go_fast: false runs on deterministic GPU kernels (reproducible.py)
    def generate_batch(self, jobs: Sequence[BatchJob], on_done: Optional[OnDone] = None, output_type: str = "rgb") -> list:
        """Runs compatible requests (batch.shape_key) as one batched forward per step; returns
        per job a GenerateResult or the EngineError it ended with (invalid_input, cancelled).
        With output_type "latent" a finished job's outcome is instead its final latents in VAE
        space, (1, channels, height, width), what diffusers returns with output_type="latent"
        (`decode` turns them into the image). A job whose should_stop answers True is dropped
        between steps, the others go on. `on_done(index, outcome)` is called as each job ends,
        cancelled ones at once. Any other exception (out of memory, a bug) is raised: it fails
        the whole batch."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        outcomes: list = [None] * len(jobs)

        def finish(k: int, outcome) -> None:
            outcomes[k] = outcome
            if on_done is not None:
                on_done(k, outcome)

        # 1. Check inputs: a job that breaks a rule is answered at once and the others run.
        #    They must share one shape, and the path they ask for must be resident.
        positions = []
        for k, job in enumerate(jobs):
            try:
                self.check_inputs(job.req)
                positions.append(k)
            except InvalidInput as e:
                finish(k, e)
        if not positions:
            return outcomes
        shapes = {shape_key(jobs[k].req) for k in positions}
        if len(shapes) > 1:
            raise ValueError(f"generate_batch: the requests cannot share a batch ({len(shapes)} different shapes)")
        reqs = [jobs[k].req for k in positions]
        first = reqs[0]
        try:
            transformer = self.fast.transformer_for(first.go_fast)
            # The batch shares its adapters (batch.shape_key); an unusable file fails them all.
            adapters = [(self.loras.get(spec.key, spec.path), spec.scale) for spec in first.loras]
        except InvalidInput as e:
            for k in positions:
                finish(k, e)
            return outcomes
        if adapters and isinstance(transformer, StaticCompiled):
            # Graphs are compiled without hooks: a LoRA batch runs the same module eagerly
            # rather than make dynamo recompile (guards on the hooks) for every adapter set.
            transformer = transformer.eager
        lora_hooks = applied(transformer, adapters) if adapters else contextlib.nullcontext()
        use_cfg = first.cfg > 1.0
        t_start = time.perf_counter()

        # 2. Encode the prompts, and the negative prompts for true CFG: [p1, n1, p2, n2, …], so
        #    each request's pair is adjacent and one request is exactly the batch-2 forward.
        prompts = [p for r in reqs for p in ((r.prompt, r.negative_prompt) if use_cfg else (r.prompt,))]
        prompt_embeds = self.text.encode(prompts).to(self.device, self.dtype)
        text_ids = Flux2KleinPipeline._prepare_text_ids(prompt_embeds).to(self.device)
        self._sync()
        t_text = time.perf_counter()

        # 3. Prepare the latents: each request's noise from its own seed.
        # The latent grid: one token per pixel_multiple² pixels (the VAE's downsampling, 2×2 patches).
        latent_height, latent_width = first.height // self.pixel_multiple, first.width // self.pixel_multiple
        latents, latent_ids = self.prepare_latents(reqs, latent_height, latent_width)

        # 4. Encode the reference images as extra tokens.
        reference_tokens, reference_ids = self.encode_references(reqs)

        # 5. Prepare the timesteps: the model's scheduler config (schedule.py), as the sampler
        #    runs them (res_2s ends at RES4LYF's σ_min).
        sigmas = sampler_sigmas(first.sampler, self.components.schedule.sigmas(first.steps, latents.shape[1])).to(self.device)

        # 6. Denoising loop: cancellation is polled before each step (a cancelled job leaves the
        #    batch), progress is sent after it.
        batch = RunningBatch(positions=positions, latents=latents, prompt_embeds=prompt_embeds,
                             reference_tokens=reference_tokens, cfg_scales=[r.cfg for r in reqs], use_cfg=use_cfg)
        image_ids = latent_ids if reference_ids is None else torch.cat([latent_ids, reference_ids], dim=1)
        velocity = ModelVelocity(transformer, batch, text_ids, image_ids, self.dtype)
        with lora_hooks:
            for i in range(first.steps):
                rows = []
                for row, k in enumerate(batch.positions):
                    if jobs[k].should_stop():
                        finish(k, Cancelled(f"cancelled before step {i + 1}"))
                    else:
                        rows.append(row)
                if not rows:
                    return outcomes
                batch.keep(rows)
                batch.latents, denoised = step(first.sampler, batch.latents, sigmas, i, velocity)
                for row, k in enumerate(batch.positions):
                    job = jobs[k]
                    preview = self._preview(denoised[row : row + 1], latent_ids, latent_height, latent_width) if job.req.preview else None
                    job.on_step(i + 1, first.steps, preview)
        self._sync()
        t_denoise = time.perf_counter()

        # 7. Decode to 8-bit RGB, one image at a time.
        t_previous = t_denoise
        for row, k in enumerate(batch.positions):
            final = self._unpack(batch.latents[row : row + 1], latent_ids, latent_height, latent_width)
            if output_type == "latent":
                finish(k, final)
                continue
            rgb = self.decode(final, first.go_fast)
            t_end = time.perf_counter()
            req = jobs[k].req
            finish(k, GenerateResult(
                width=req.width, height=req.height, seed=req.seed, rgb=rgb,
                timings={
                    "text_ms": (t_text - t_start) * 1000,
                    "denoise_ms": (t_denoise - t_text) * 1000,
                    "decode_ms": (t_end - t_previous) * 1000,
                    "total_ms": (t_end - t_start) * 1000,
                },
            ))
            t_previous = t_end
        return outcomes

    # ----------------------------------------------------------------- stages
    def check_inputs(self, req: GenerateRequest) -> None:
        """Raises InvalidInput naming the first rule `req` breaks (limits.py)."""
        m = self.pixel_multiple
        for name, v in (("width", req.width), ("height", req.height)):
            if not isinstance(v, int) or v < MIN_SIDE or v > MAX_SIDE or v % m:
                raise InvalidInput(f"{name} must be a multiple of {m} from {MIN_SIDE} to {MAX_SIDE}, got {v}")
        if req.sampler not in SAMPLERS:
            raise InvalidInput(f"sampler must be one of {', '.join(SAMPLERS)}, got {req.sampler!r}")
        if not isinstance(req.steps, int) or not 1 <= req.steps <= MAX_STEPS:
            raise InvalidInput(f"steps must be an integer from 1 to {MAX_STEPS}, got {req.steps}")
        if not req.cfg >= 1.0:
            raise InvalidInput(f"cfg must be at least 1, got {req.cfg}")
        if not 0 <= req.seed < 2**64:
            raise InvalidInput(f"seed must be from 0 to 2^64-1, got {req.seed}")
        if len(req.images) > MAX_REFERENCE_IMAGES:
            raise InvalidInput(f"at most {MAX_REFERENCE_IMAGES} reference images, got {len(req.images)}")
        for i, im in enumerate(req.images):
            if im.width < MIN_SIDE or im.height < MIN_SIDE or im.width % m or im.height % m:
                raise InvalidInput(f"reference image {i}: sides must be multiples of {m} and at least {MIN_SIDE}, got {im.width}x{im.height}")
            if len(im.rgb) != im.width * im.height * 3:
                raise InvalidInput(f"reference image {i}: {len(im.rgb)} bytes do not make a {im.width}x{im.height} RGB image")
        if len(req.loras) > MAX_LORAS:
            raise InvalidInput(f"at most {MAX_LORAS} LoRA adapters, got {len(req.loras)}")
        for i, lora in enumerate(req.loras):
            if not re.fullmatch(r"[0-9a-f]{64}", lora.key):
                raise InvalidInput(f"loras[{i}].key must be the file's sha256 in lowercase hex (64 characters), got {lora.key!r:.80}")
            if not (math.isfinite(lora.scale) and -MAX_LORA_SCALE <= lora.scale <= MAX_LORA_SCALE):
                raise InvalidInput(f"loras[{i}].scale must be from {-MAX_LORA_SCALE:g} to {MAX_LORA_SCALE:g}, got {lora.scale}")

    def prepare_latents(self, reqs: Sequence[GenerateRequest], latent_height: int, latent_width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each request's initial noise, (1, channels, latent_height, latent_width), drawn from
        a CPU generator seeded with its seed, so a seed gives the same noise on any device and
        in any batch; packed to (requests, latent_height·latent_width, channels), with the
        position ids."""
        noise = [
            randn_tensor((1, self.latent_channels, latent_height, latent_width), generator=torch.Generator("cpu").manual_seed(r.seed),
                         device=self.device, dtype=self.dtype)
            for r in reqs
        ]
        latent_ids = Flux2KleinPipeline._prepare_latent_ids(noise[0]).to(self.device)
        packed = [Flux2KleinPipeline._pack_latents(n) for n in noise]
        # One request keeps the packed view as it is: a contiguous copy would change the layout
        # the first forward reads, and with it (on a CPU too) the last bits of the image.
        return (torch.cat(packed, dim=0) if len(packed) > 1 else packed[0]), latent_ids

    def encode_references(self, reqs: Sequence[GenerateRequest]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Each request's reference images as tokens, (requests, tokens, channels), with their
        position ids (RoPE time offsets 10, 20, …); (None, None) without references. The
        requests of a batch have equal reference sizes, so equal ids."""
        if not reqs[0].images:
            return None, None
        encoded = [self._encode_reference_images(r.images) for r in reqs]
        tokens = torch.cat([t for t, _ in encoded], dim=0) if len(encoded) > 1 else encoded[0][0]
        return tokens, encoded[0][1]

    def _encode_reference_images(self, images: Sequence[ReferenceImage]) -> tuple[torch.Tensor, torch.Tensor]:
        """As Flux2KleinPipeline.prepare_image_latents: the VAE posterior's mean, patchified,
        BatchNorm-normalised and packed; the images' tokens one after another."""
        vae = self.components.vae
        latents = []
        for im in images:
            # As VaeImageProcessor: uint8 → float32 / 255 → 2x − 1.
            arr = np.frombuffer(im.rgb, dtype=np.uint8).reshape(im.height, im.width, 3).astype(np.float32) / 255.0
            pixels = torch.from_numpy(2.0 * arr - 1.0).permute(2, 0, 1).unsqueeze(0)
            pixels = pixels.to(self.device, vae.dtype)
            mean = vae.encode(pixels).latent_dist.mode()
            z = Flux2KleinPipeline._patchify_latents(mean)
            z = (z - self.bn_mean.to(z.dtype)) / self.bn_std.to(z.dtype)
            latents.append(z)
        ids = Flux2KleinPipeline._prepare_image_ids(latents).to(self.device)
        tokens = torch.cat([Flux2KleinPipeline._pack_latents(z).squeeze(0) for z in latents], dim=0).unsqueeze(0)
        return tokens.to(self.dtype), ids

    def _unpack(self, x: torch.Tensor, latent_ids: torch.Tensor, latent_height: int, latent_width: int) -> torch.Tensor:
        """Packed latents → VAE-space latents: unpacked, BatchNorm-denormalised, unpatchified."""
        z = Flux2KleinPipeline._unpack_latents_with_ids(x, latent_ids, latent_height, latent_width)
        z = z * self.bn_std.to(z.dtype) + self.bn_mean.to(z.dtype)
        return Flux2KleinPipeline._unpatchify_latents(z)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, go_fast: bool = False) -> bytes:
        """Final VAE-space latents (1, channels, height, width) → packed 8-bit RGB, through the
        go_fast or the reference decoder."""
        with reference_flags(self.device, enabled=not go_fast):
            image = self.fast.decoder_for(go_fast)(latents.to(self.components.vae.dtype))
        # As VaeImageProcessor.postprocess → PIL: (x/2 + 0.5) clamped, ×255, rounded, in float32.
        image = (image.float() / 2 + 0.5).clamp(0, 1)
        pixels = (image[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        return pixels.tobytes()

    def _fit_preview_map(self) -> torch.Tensor:
        """A linear map from the 32 VAE latent channels (+ bias) to RGB, fitted once by least
        squares on a few small decodes, so previews need no VAE decode."""
        vae = self.components.vae
        gen = torch.Generator("cpu").manual_seed(1234)
        c = vae.config.latent_channels
        z = torch.randn((4, c, 8, 8), generator=gen).to(self.device, vae.dtype)
        with torch.inference_mode():
            img = vae.decode(z, return_dict=False)[0].float()
        pooled = torch.nn.functional.avg_pool2d(img, self.vae_scale)  # (4, 3, 8, 8)
        xs = torch.cat([z.float().permute(0, 2, 3, 1).reshape(-1, c), torch.ones(4 * 64, 1, device=z.device)], dim=1)
        ys = pooled.permute(0, 2, 3, 1).reshape(-1, 3)
        sol = torch.linalg.lstsq(xs.cpu(), ys.cpu()).solution  # (c + 1, 3)
        return sol.to(self.device)

    def _preview(self, denoised: torch.Tensor, latent_ids: torch.Tensor, latent_height: int, latent_width: int) -> Preview:
        z = self._unpack(denoised.to(self.dtype), latent_ids, latent_height, latent_width)[0].float()  # (c, 2h, 2w)
        c, hh, ww = z.shape
        flat = torch.cat([z.permute(1, 2, 0).reshape(-1, c), torch.ones(hh * ww, 1, device=z.device)], dim=1)
        rgb = (flat @ self.preview_map).reshape(hh, ww, 3)
        scale = min(1.0, PREVIEW_MAX_SIDE / max(hh, ww))
        if scale < 1.0:
            nh, nw = max(1, int(hh * scale)), max(1, int(ww * scale))
            rgb = torch.nn.functional.interpolate(rgb.permute(2, 0, 1)[None], size=(nh, nw), mode="area")[0].permute(1, 2, 0)
        pixels = ((rgb / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return Preview(width=pixels.shape[1], height=pixels.shape[0], rgb=pixels.tobytes())

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
