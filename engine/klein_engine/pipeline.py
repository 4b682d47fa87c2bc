"""KleinEngine: FLUX.2 [klein] generation with our own sampling loop.

Same numerics as diffusers' Flux2KleinPipeline (proven on `tiny` in tests/test_parity.py),
plus what a server needs: true CFG batched as one batch-2 forward on any variant, res_2s,
cancellation between steps, progress with cheap previews, per-stage timings, a prompt cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline
from diffusers.utils.torch_utils import randn_tensor

from .job import Cancelled, GenerateRequest, GenerateResult, InvalidInput, OnStep, Preview, ShouldStop
from .load import Components, load_components
from .sampling import SAMPLERS, flux_sigmas, integrate
from .text import TextEncoder

MAX_REFERENCE_IMAGES = 4
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_STEPS = 100
PREVIEW_MAX_SIDE = 256

@dataclass
class Denoised:
    x: torch.Tensor  # packed final latents (1, tokens, channels)
    latent_ids: torch.Tensor
    h: int
    w: int
    t_text: float


# The pipeline's static helpers: position ids, (un)patchify, (un)pack. Reused, not copied.
P = Flux2KleinPipeline


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class KleinEngine:
    def __init__(self, model: str, comps: Components, device: str, dtype: torch.dtype, text_cache: int = 64):
        self.model = model
        self.c = comps
        self.device = torch.device(device)
        self.dtype = dtype
        self.text = TextEncoder(comps.tokenizer, comps.text_encoder, cache_size=text_cache)
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

    # ------------------------------------------------------------------ setup
    @classmethod
    def load(cls, model: str, device: Optional[str] = None) -> "KleinEngine":
        device = device or default_device()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        comps = load_components(model, device, dtype)
        return cls(model, comps, device, dtype)

    def facts(self) -> dict:
        return {
            "model": self.model,
            "variant": self.c.variant,
            "device": str(self.device) if self.device.type != "cuda" else f"cuda:{self.device.index or 0}",
            "dtype": str(self.dtype).replace("torch.", ""),
            "capabilities": {
                "samplers": list(SAMPLERS),
                "max_reference_images": MAX_REFERENCE_IMAGES,
                # The fast path (fp8, compiled kernels) exists only on CUDA; on CPU it changes nothing.
                "go_fast": False,
                "preview": True,
            },
            "geometry": {"pixel_multiple": self.pixel_multiple, "min_side": MIN_SIDE, "max_side": MAX_SIDE},
        }

    # ------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> GenerateResult:
        t_start = time.perf_counter()
        run = self.denoise(req, on_step, should_stop)
        self._sync()
        t_denoise = time.perf_counter()

        # 8. Decode to 8-bit RGB.
        rgb = self._decode(run.x, run.latent_ids, run.h, run.w)
        t_end = time.perf_counter()
        return GenerateResult(
            width=req.width,
            height=req.height,
            seed=req.seed,
            rgb=rgb,
            timings={
                "text_ms": (run.t_text - t_start) * 1000,
                "denoise_ms": (t_denoise - run.t_text) * 1000,
                "decode_ms": (t_end - t_denoise) * 1000,
                "total_ms": (t_end - t_start) * 1000,
            },
        )

    @torch.inference_mode()
    def denoise(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> "Denoised":
        """Steps 1–7: everything but the VAE decode. Returns the packed final latents."""
        # 1. Check inputs (concise errors, no silent correction).
        self._check(req)

        # 2. Encode the prompt (and the negative prompt for true CFG, batched as one batch-2 forward).
        use_cfg = req.cfg > 1.0
        prompts = [req.prompt, req.negative_prompt] if use_cfg else [req.prompt]
        embeds = self.text.encode(prompts).to(self.device, self.dtype)
        text_ids = P._prepare_text_ids(embeds).to(self.device)
        self._sync()
        t_text = time.perf_counter()

        # 3. Initial noise: a CPU generator, so the same seed gives the same noise on any device.
        h, w = req.height // self.pixel_multiple, req.width // self.pixel_multiple
        generator = torch.Generator("cpu").manual_seed(req.seed)
        noise = randn_tensor((1, self.latent_channels, h, w), generator=generator, device=self.device, dtype=self.dtype)
        latent_ids = P._prepare_latent_ids(noise).to(self.device)
        x = P._pack_latents(noise)
        n_tokens = x.shape[1]

        # 4. Reference images as extra tokens (VAE posterior mean, BatchNorm-normalised,
        #    RoPE time offsets 10, 20, …).
        ref_tokens, ref_ids = self._encode_references(req)

        # 5. Schedule.
        sigmas = flux_sigmas(req.steps, n_tokens).to(self.device)

        # 6. The model as a velocity field, with CFG applied.
        batch = embeds.shape[0]
        all_ids = latent_ids if ref_ids is None else torch.cat([latent_ids, ref_ids], dim=1)

        def velocity(xt: torch.Tensor, i: int, sigma: torch.Tensor) -> torch.Tensor:
            hidden = xt.to(self.dtype)
            if ref_tokens is not None:
                hidden = torch.cat([hidden, ref_tokens], dim=1)
            if batch > 1:
                hidden = hidden.expand(batch, -1, -1)
            # As the reference pipeline: timesteps are σ·1000 in float32, cast to the latent
            # dtype, then divided by 1000 again.
            t = (sigma.to(torch.float32) * 1000).expand(batch).to(xt.dtype)
            out = self.c.transformer(
                hidden_states=hidden,
                timestep=t / 1000,
                guidance=None,
                encoder_hidden_states=embeds,
                txt_ids=text_ids,
                img_ids=all_ids,
                return_dict=False,
            )[0][:, :n_tokens]
            if batch == 1:
                return out
            cond, neg = out[:1], out[1:]
            return neg + req.cfg * (cond - neg)

        # 7. Denoising loop: cancellation before each step, progress after it.
        def before(i: int) -> None:
            if should_stop():
                raise Cancelled(f"cancelled before step {i + 1}")

        def after(i: int, xt: torch.Tensor, denoised: torch.Tensor) -> None:
            preview = self._preview(denoised, latent_ids, h, w) if req.preview else None
            on_step(i + 1, req.steps, preview)

        x = integrate(req.sampler, x, sigmas, velocity, before, after)
        return Denoised(x=x, latent_ids=latent_ids, h=h, w=w, t_text=t_text)

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

    def _decode(self, x: torch.Tensor, latent_ids: torch.Tensor, h: int, w: int) -> bytes:
        z = self._unpack(x, latent_ids, h, w).to(self.c.vae.dtype)
        image = self.c.vae.decode(z, return_dict=False)[0]
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
