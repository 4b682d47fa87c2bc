"""KleinEngine: FLUX.2 [klein] generation with our own sampling loop.

Same numerics as diffusers' Flux2KleinPipeline (proven on `tiny` in tests/test_parity.py),
plus what a server needs: true CFG batched as one batch-2 forward on any variant, res_2s,
cancellation between steps, progress with cheap previews, per-stage timings, a prompt cache,
the go_fast path (fast/), and batches of compatible go_fast requests (batch.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline
from diffusers.utils.torch_utils import randn_tensor

from .batch import BatchJob, shape_key
from .fast.path import FastPath
from .job import Cancelled, EngineError, GenerateRequest, GenerateResult, InvalidInput, OnStep, Preview, ShouldStop
from .load import Components, load_components
from .offload import Placement
from .options import EngineOptions
from .sampling import SAMPLERS, flux_sigmas, step
from .text import TextEncoder

log = logging.getLogger("klein_engine")

MAX_REFERENCE_IMAGES = 4
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_STEPS = 100
PREVIEW_MAX_SIDE = 256
# Warm-up: steps per request (each shape needs a few calls: compile, CUDA-graph record, replay).
WARMUP_STEPS = 2
WARMUP_RUNS = 2

# Called as each job of a batch finishes, with its index and its result or error.
OnDone = Callable[[int, object], None]


@dataclass
class Denoised:
    x: torch.Tensor  # packed final latents (active jobs, tokens, channels)
    latent_ids: torch.Tensor
    h: int
    w: int
    t_text: float
    index: list  # position in the caller's job list of each row of x


# The pipeline's static helpers: position ids, (un)patchify, (un)pack. Reused, not copied.
P = Flux2KleinPipeline


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class KleinEngine:
    def __init__(self, model: str, comps: Components, device: str, dtype: torch.dtype, text_cache: int = 64,
                 options: Optional[EngineOptions] = None):
        self.model = model
        self.c = comps
        self.device = torch.device(device)
        self.dtype = dtype
        self.options = options or EngineOptions()
        self.max_batch = self.options.max_batch
        placement = Placement(comps.text_encoder, self.device, self.options.offload)
        self.text = TextEncoder(comps.tokenizer, comps.text_encoder, cache_size=text_cache, placement=placement)
        vae_cfg = comps.vae.config
        self.vae_scale = 2 ** (len(vae_cfg.block_out_channels) - 1)
        patch = vae_cfg.patch_size
        self.patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.pixel_multiple = self.vae_scale * self.patch
        self.latent_channels = comps.transformer.config.in_channels
        if comps.transformer.config.joint_attention_dim != self.text.width:
            raise InvalidInput(
                f"transformer expects text features of width {comps.transformer.config.joint_attention_dim}, "
                f"the text encoder gives {self.text.width}: the components do not belong together"
            )
        bn = comps.vae.bn
        eps = vae_cfg.batch_norm_eps
        self.bn_mean = bn.running_mean.view(1, -1, 1, 1)
        self.bn_std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + eps)
        self.preview_map = self._fit_preview_map()
        sizes = self.options.warmup_sizes or ((1024, 1024),)
        warm_tokens = max(w * h for w, h in sizes) // self.pixel_multiple**2 + 512
        # With KLEIN_GO_FAST_ONLY=1 comps.transformer is quantised in place: the only transformer.
        self.fast = FastPath.build(comps.transformer, comps.vae, self.device, self.options, warm_tokens=warm_tokens)

    # ------------------------------------------------------------------ setup
    @classmethod
    def load(cls, model: str, device: Optional[str] = None, options: Optional[EngineOptions] = None) -> "KleinEngine":
        device = device or default_device()
        options = options or EngineOptions.from_env()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        comps = load_components(model, device, dtype,
                                text_device="cpu" if options.offload == "model" else None,
                                transformer_device="cpu" if options.go_fast_only else None)
        return cls(model, comps, device, dtype, options=options)

    def facts(self) -> dict:
        return {
            "model": self.model,
            "variant": self.c.variant,
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
    def generate(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> GenerateResult:
        out = self.generate_batch([BatchJob(req, on_step, should_stop)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    @torch.inference_mode()
    def generate_batch(self, jobs: Sequence[BatchJob], on_done: Optional[OnDone] = None) -> list:
        """Runs compatible requests (batch.shape_key) as one batched forward per step; returns
        per job a GenerateResult or the EngineError it ended with (invalid_input, cancelled).
        A job whose should_stop answers True is dropped between steps, the others go on.
        `on_done(index, outcome)` is called as each job ends, cancelled ones at once.
        Any other exception (out of memory, a bug) is raised: it fails the whole batch."""
        outcomes: list = [None] * len(jobs)

        def done(k: int, outcome) -> None:
            outcomes[k] = outcome
            if on_done is not None:
                on_done(k, outcome)

        valid = []
        for k, job in enumerate(jobs):
            try:
                self._check(job.req)
                valid.append(k)
            except InvalidInput as e:
                done(k, e)
        if not valid:
            return outcomes
        keys = {shape_key(jobs[k].req) for k in valid}
        if len(keys) > 1:
            raise ValueError(f"generate_batch: the requests cannot share a batch ({len(keys)} different shapes)")
        go_fast = jobs[valid[0]].req.go_fast
        try:
            self.fast.transformer_for(go_fast)
        except InvalidInput as e:
            for k in valid:
                done(k, e)
            return outcomes

        t_start = time.perf_counter()
        run = self._denoise([jobs[k] for k in valid], lambda pos, e: done(valid[pos], e))
        if run is None:
            return outcomes
        self._sync()
        t_denoise = time.perf_counter()

        # 8. Decode to 8-bit RGB, one image at a time.
        t_prev = t_denoise
        for row, pos in enumerate(run.index):
            req = jobs[valid[pos]].req
            rgb = self._decode(run.x[row : row + 1], run.latent_ids, run.h, run.w, go_fast)
            t_end = time.perf_counter()
            done(valid[pos], GenerateResult(
                width=req.width, height=req.height, seed=req.seed, rgb=rgb,
                timings={
                    "text_ms": (run.t_text - t_start) * 1000,
                    "denoise_ms": (t_denoise - run.t_text) * 1000,
                    "decode_ms": (t_end - t_prev) * 1000,
                    "total_ms": (t_end - t_start) * 1000,
                },
            ))
            t_prev = t_end
        return outcomes

    @torch.inference_mode()
    def denoise(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> "Denoised":
        """Steps 1–7 for one request: everything but the VAE decode. Returns the packed final latents."""
        self._check(req)
        self.fast.transformer_for(req.go_fast)
        dropped: list = []
        run = self._denoise([BatchJob(req, on_step, should_stop)], lambda pos, e: dropped.append(e))
        if run is None:
            raise dropped[0]
        return run

    def _denoise(self, jobs: list, on_drop: Callable[[int, EngineError], None]) -> Optional[Denoised]:
        """Steps 2–7 for checked, compatible jobs; None when every job was cancelled."""
        first = jobs[0].req
        use_cfg = first.cfg > 1.0
        per_job = 2 if use_cfg else 1

        # 2. Encode the prompts (and the negative prompts for true CFG: [p1, n1, p2, n2, …], so
        #    each request's pair is adjacent and one request is exactly the batch-2 forward).
        prompts = [p for j in jobs for p in ((j.req.prompt, j.req.negative_prompt) if use_cfg else (j.req.prompt,))]
        embeds = self.text.encode(prompts).to(self.device, self.dtype)
        text_ids = P._prepare_text_ids(embeds).to(self.device)
        self._sync()
        t_text = time.perf_counter()

        # 3. Initial noise per request: a CPU generator, so the same seed gives the same noise
        #    on any device and in any batch.
        h, w = first.height // self.pixel_multiple, first.width // self.pixel_multiple
        noises = [
            randn_tensor((1, self.latent_channels, h, w), generator=torch.Generator("cpu").manual_seed(j.req.seed),
                         device=self.device, dtype=self.dtype)
            for j in jobs
        ]
        latent_ids = P._prepare_latent_ids(noises[0]).to(self.device)
        x = torch.cat([P._pack_latents(n) for n in noises], dim=0) if len(noises) > 1 else P._pack_latents(noises[0])
        n_tokens = x.shape[1]

        # 4. Reference images as extra tokens (VAE posterior mean, BatchNorm-normalised,
        #    RoPE time offsets 10, 20, …); equal sizes across the batch, so equal ids.
        refs = [self._encode_references(j.req) for j in jobs]
        ref_ids = refs[0][1]
        ref_tokens = None if ref_ids is None else (torch.cat([t for t, _ in refs], dim=0) if len(refs) > 1 else refs[0][0])

        # 5. Schedule.
        sigmas = flux_sigmas(first.steps, n_tokens).to(self.device)

        # 6. The model as a velocity field, with CFG applied per request.
        transformer = self.fast.transformer_for(first.go_fast)
        all_ids = latent_ids if ref_ids is None else torch.cat([latent_ids, ref_ids], dim=1)
        state = {"embeds": embeds, "refs": ref_tokens, "cfgs": [j.req.cfg for j in jobs]}

        def velocity(xt: torch.Tensor, i: int, sigma: torch.Tensor) -> torch.Tensor:
            b = xt.shape[0]
            hidden = xt.to(self.dtype)
            if state["refs"] is not None:
                hidden = torch.cat([hidden, state["refs"]], dim=1)
            if use_cfg:
                hidden = hidden.expand(2, -1, -1) if b == 1 else hidden.repeat_interleave(2, dim=0)
            rows = hidden.shape[0]
            # As the reference pipeline: timesteps are σ·1000 in float32, cast to the latent
            # dtype, then divided by 1000 again.
            t = (sigma.to(torch.float32) * 1000).expand(rows).to(xt.dtype)
            out = transformer(
                hidden_states=hidden,
                timestep=t / 1000,
                guidance=None,
                encoder_hidden_states=state["embeds"],
                txt_ids=text_ids,
                img_ids=all_ids,
                return_dict=False,
            )[0][:, :n_tokens]
            if not use_cfg:
                return out
            parts = []
            for k, cfg in enumerate(state["cfgs"]):
                cond, neg = out[2 * k : 2 * k + 1], out[2 * k + 1 : 2 * k + 2]
                parts.append(neg + cfg * (cond - neg))
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

        # 7. Denoising loop: cancellation before each step (a cancelled job leaves the batch),
        #    progress after it.
        active = list(range(len(jobs)))
        for i in range(first.steps):
            keep = []
            for row, pos in enumerate(active):
                if jobs[pos].should_stop():
                    on_drop(pos, Cancelled(f"cancelled before step {i + 1}"))
                else:
                    keep.append(row)
            if not keep:
                return None
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=self.device)
                text_rows = torch.tensor([r * per_job + c for r in keep for c in range(per_job)], device=self.device)
                x = x.index_select(0, rows)
                state["embeds"] = state["embeds"].index_select(0, text_rows)
                if state["refs"] is not None:
                    state["refs"] = state["refs"].index_select(0, rows)
                state["cfgs"] = [state["cfgs"][r] for r in keep]
                active = [active[r] for r in keep]
            x, denoised = step(first.sampler, x, sigmas, i, velocity)
            for row, pos in enumerate(active):
                job = jobs[pos]
                preview = self._preview(denoised[row : row + 1], latent_ids, h, w) if job.req.preview else None
                job.on_step(i + 1, first.steps, preview)
        return Denoised(x=x, latent_ids=latent_ids, h=h, w=w, t_text=t_text, index=active)

    # ----------------------------------------------------------------- stages
    def _check(self, req: GenerateRequest) -> None:
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

    def _encode_references(self, req: GenerateRequest):
        if not req.images:
            return None, None
        latents = []
        for im in req.images:
            # As VaeImageProcessor: uint8 → float32 / 255 → 2x − 1.
            arr = np.frombuffer(im.rgb, dtype=np.uint8).reshape(im.height, im.width, 3).astype(np.float32) / 255.0
            pixels = torch.from_numpy(2.0 * arr - 1.0).permute(2, 0, 1).unsqueeze(0)
            pixels = pixels.to(self.device, self.c.vae.dtype)
            mean = self.c.vae.encode(pixels).latent_dist.mode()
            z = P._patchify_latents(mean)
            z = (z - self.bn_mean.to(z.dtype)) / self.bn_std.to(z.dtype)
            latents.append(z)
        ids = P._prepare_image_ids(latents).to(self.device)
        tokens = torch.cat([P._pack_latents(z).squeeze(0) for z in latents], dim=0).unsqueeze(0)
        return tokens.to(self.dtype), ids

    def _unpack(self, x: torch.Tensor, latent_ids: torch.Tensor, h: int, w: int) -> torch.Tensor:
        z = P._unpack_latents_with_ids(x, latent_ids, h, w)
        z = z * self.bn_std.to(z.dtype) + self.bn_mean.to(z.dtype)
        return P._unpatchify_latents(z)

    def final_latents(self, x: torch.Tensor, latent_ids: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The VAE-space latents the reference pipeline returns with output_type='latent'."""
        return self._unpack(x, latent_ids, h, w)

    def _decode(self, x: torch.Tensor, latent_ids: torch.Tensor, h: int, w: int, go_fast: bool = False) -> bytes:
        z = self._unpack(x, latent_ids, h, w).to(self.c.vae.dtype)
        image = self.fast.decoder_for(go_fast)(z)
        # As VaeImageProcessor.postprocess → PIL: (x/2 + 0.5) clamped, ×255, rounded, in float32.
        image = (image.float() / 2 + 0.5).clamp(0, 1)
        pixels = (image[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        return pixels.tobytes()

    def _fit_preview_map(self) -> torch.Tensor:
        """A linear map from the 32 VAE latent channels (+ bias) to RGB, fitted once by least
        squares on a few small decodes, so previews need no VAE decode."""
        gen = torch.Generator("cpu").manual_seed(1234)
        c = self.c.vae.config.latent_channels
        z = torch.randn((4, c, 8, 8), generator=gen).to(self.device, self.c.vae.dtype)
        with torch.inference_mode():
            img = self.c.vae.decode(z, return_dict=False)[0].float()
        pooled = torch.nn.functional.avg_pool2d(img, self.vae_scale)  # (4, 3, 8, 8)
        xs = torch.cat([z.float().permute(0, 2, 3, 1).reshape(-1, c), torch.ones(4 * 64, 1, device=z.device)], dim=1)
        ys = pooled.permute(0, 2, 3, 1).reshape(-1, 3)
        sol = torch.linalg.lstsq(xs.cpu(), ys.cpu()).solution  # (c + 1, 3)
        return sol.to(self.device)

    def _preview(self, denoised: torch.Tensor, latent_ids: torch.Tensor, h: int, w: int) -> Preview:
        z = self._unpack(denoised.to(self.dtype), latent_ids, h, w)[0].float()  # (c, 2h, 2w)
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
