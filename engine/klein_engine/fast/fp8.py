"""fp8 (e4m3) weights and matmuls for the transformer's linear layers.

Numerics (the same on every device; only the final matmul differs):
- weights: one scale per output channel, s_w[n] = max_k |W[n, k]| / 448, W8 = W / s_w
  rounded to e4m3 (round to nearest even, as `Tensor.to(torch.float8_e4m3fn)` does);
- activations: a dynamic scale per call, one per tensor (default) or one per token (row),
  s_x = max |x| / 448, X8 = x / s_x rounded to e4m3;
- y = (X8 @ W8ᵀ) · s_x · s_wᵀ, accumulated in float32, returned in the input's dtype.

On CUDA with compute capability >= 8.9 (Ada, Hopper, Blackwell: fp8 tensor cores) the
product is `torch._scaled_mm` (cuBLASLt), whose scales are dequantisation factors exactly as
above; `emulated_matmul` computes the same product with float32 matmuls on any device, so
the CPU tests check the quantisation and its error bound, and pin the scale convention
against `torch._scaled_mm`'s own CPU implementation (tests/test_fp8.py).

Error bound: e4m3 keeps 3 mantissa bits, so rounding a value in the normal range changes it
by at most 2^-4 of itself (u = 1/16); below 2^-6 (subnormals) by at most 2^-10 in scaled
units. Per element of the output, |y8 − y| ≤ Σ_k (u|x_k| + δ_x)((1+u)|w_k| + δ_w) + |x_k|(u|w_k| + δ_w)
with δ = 2^-10·scale (tests/test_fp8.py asserts it). On random Gaussian data the relative
error of the product is about 3.7 % (per-tensor activations).

Which layers stay in high precision, and why (HIGH_PRECISION below):
- `x_embedder`, `context_embedder`: the model's inputs. The text features are Qwen3 hidden
  states, whose few "massive activation" channels would take the whole per-tensor scale
  and round everything else to zero; their FLOPs are < 0.1 % of a forward.
- `time_guidance_embed.*`, `*_modulation.*`, `norm_out.linear`: they read one row per
  image (M = batch), so they are weight-bandwidth bound and fp8 tensor cores cannot help;
  their outputs scale and gate every block, so their error would multiply everywhere.
- `proj_out`: the velocity itself (N = 128), what the sampler integrates; negligible FLOPs.
Everything inside the 5 double and 20 single blocks (q/k/v/out projections, the fused
qkv+MLP projection and the SwiGLU MLPs) goes to fp8: 13·D² of the 13·D² + O(D) weights per
block, about 99 % of the linear FLOPs (reference §11).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
# Smallest scale: keeps an all-zero tensor from dividing by zero (it quantises to zeros).
MIN_SCALE = 1e-12
# Relative rounding error of e4m3 in its normal range, and the absolute error below it
# (half the subnormal spacing 2^-9), both in scaled units.
UNIT_ROUNDOFF = 2.0**-4
SUBNORMAL_HALF_SPACING = 2.0**-10
# cuBLASLt fp8 GEMMs need both matrix sides (K and N) to be multiples of 16.
CUDA_ALIGN = 16

HIGH_PRECISION = (
    "x_embedder",
    "context_embedder",
    "proj_out",
    "norm_out.",
    "time_guidance_embed.",
    "double_stream_modulation_img.",
    "double_stream_modulation_txt.",
    "single_stream_modulation.",
)


def keep_high_precision(name: str) -> bool:
    """True for the transformer's linear layers that stay in bf16 (see the module doc)."""
    return any(name == p or name.startswith(p) for p in HIGH_PRECISION)


# ---------------------------------------------------------------- capability
@dataclass(frozen=True)
class Fp8Support:
    """Whether this device runs fp8 matmuls, how, and in words why (for facts and logs)."""

    ok: bool
    # "rowwise": _scaled_mm applies both scales; "tensorwise": _scaled_mm with the
    # activation scale, the per-channel weight scale applied to its output.
    kernel: Optional[str]
    reason: str


def fp8_support(device: torch.device | str) -> Fp8Support:
    """fp8 tensor cores need CUDA compute capability 8.9 (Ada) or newer; Ampere and older
    only emulate fp8 and would be slower than bf16. A tiny real GEMM then decides the kernel
    form, since per-channel (row-wise) scales are not supported by every build and GPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return Fp8Support(False, None, f"fp8 matmuls need a CUDA GPU (device is {device.type})")
    if not torch.cuda.is_available():
        return Fp8Support(False, None, "CUDA is not available")
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return Fp8Support(False, None, f"torch {torch.__version__} has no fp8 matmul (_scaled_mm)")
    major, minor = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    if (major, minor) < (8, 9):
        return Fp8Support(False, None, f"{name} has compute capability {major}.{minor}; fp8 tensor cores need 8.9 or newer")
    for kernel in ("rowwise", "tensorwise"):
        try:
            x = torch.randn(32, 64, device=device, dtype=torch.bfloat16)
            w = torch.randn(48, 64, device=device, dtype=torch.bfloat16)
            w8, sw = quantize_weight(w)
            got = cuda_matmul(x, w8, sw, "tensor", kernel)
            want = emulated_matmul(x, w8, sw, "tensor")
            if torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2):
                return Fp8Support(True, kernel, f"{name} (compute capability {major}.{minor}), _scaled_mm {kernel}")
        except (RuntimeError, TypeError, ValueError):
            continue
    return Fp8Support(False, None, f"torch._scaled_mm failed on {name}: no fp8 matmul available")


# ---------------------------------------------------------------- numerics
def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) weight → (e4m3 (N, K), float32 scales (N,)), one scale per output channel."""
    wf = w.detach().float()
    scale = (wf.abs().amax(dim=1) / E4M3_MAX).clamp(min=MIN_SCALE)
    w8 = (wf / scale[:, None]).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return w8, scale


def quantize_activation(x: torch.Tensor, granularity: str = "tensor") -> tuple[torch.Tensor, torch.Tensor]:
    """(M, K) activations → (e4m3 (M, K), float32 scale (1, 1) per tensor or (M, 1) per row)."""
    xf = x.float()
    if granularity == "tensor":
        amax = xf.abs().amax().reshape(1, 1)
    elif granularity == "row":
        amax = xf.abs().amax(dim=1, keepdim=True)
    else:
        raise ValueError(f"activation scale granularity must be 'tensor' or 'row', got {granularity!r}")
    scale = (amax / E4M3_MAX).clamp(min=MIN_SCALE)
    return (xf / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """e4m3 values times their scales (weights: (N,) per row; activations: (M, 1) or (1, 1))."""
    s = scale if scale.dim() == 2 else scale[:, None]
    return q.float() * s


def emulated_matmul(x: torch.Tensor, w8: torch.Tensor, w_scale: torch.Tensor, granularity: str = "tensor") -> torch.Tensor:
    """x (M, K) @ fp8 weight (N, K)ᵀ with x quantised as the GPU path does; float32 matmul."""
    x8, x_scale = quantize_activation(x, granularity)
    y = (x8.float() @ w8.float().t()) * x_scale * w_scale[None, :]
    return y.to(x.dtype)


def cuda_matmul(x: torch.Tensor, w8: torch.Tensor, w_scale: torch.Tensor, granularity: str, kernel: str) -> torch.Tensor:
    """The same product on fp8 tensor cores. `_scaled_mm` wants the second operand
    column-major, which the (N, K) row-major weight's transpose is."""
    x8, x_scale = quantize_activation(x, granularity)
    m = x8.shape[0]
    if kernel == "rowwise":
        return torch._scaled_mm(
            x8, w8.t(), scale_a=x_scale.expand(m, 1).contiguous(), scale_b=w_scale[None, :].contiguous(), out_dtype=x.dtype
        )
    if granularity != "tensor":
        raise ValueError("per-row activation scales need the rowwise _scaled_mm kernel")
    y = torch._scaled_mm(x8, w8.t(), scale_a=x_scale.reshape(()), scale_b=w_scale.new_ones(()), out_dtype=torch.float32)
    return (y * w_scale[None, :]).to(x.dtype)


# ---------------------------------------------------------------- the module
class Fp8Linear(nn.Module):
    """Drop-in for a bias-free or biased nn.Linear: same in/out features, same call, same
    output shape and dtype. Holds the e4m3 weight and its per-channel scales as buffers
    (they move with `.to(device)`, and torch.compile treats them as inputs)."""

    def __init__(self, linear: nn.Linear, kernel: str, granularity: str = "tensor", device: torch.device | str | None = None):
        """Quantises `linear`'s weight; with `device`, a temporary copy of it on `device` (the
        source module is left where it is)."""
        super().__init__()
        if kernel not in ("rowwise", "tensorwise", "emulated"):
            raise ValueError(f"kernel must be rowwise, tensorwise or emulated, got {kernel!r}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.kernel = kernel
        self.granularity = granularity
        weight = linear.weight.detach()
        w8, scale = quantize_weight(weight if device is None else weight.to(device))
        self.register_buffer("weight_fp8", w8)
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().to(w8.device, copy=True)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if self.kernel == "emulated":
            y = emulated_matmul(x2, self.weight_fp8, self.weight_scale, self.granularity)
        else:
            y = cuda_matmul(x2.contiguous(), self.weight_fp8, self.weight_scale, self.granularity, self.kernel)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize(self.weight_fp8, self.weight_scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}, act_scale={self.granularity}"


def swap_linears(
    model: nn.Module,
    kernel: str,
    granularity: str = "tensor",
    keep: Callable[[str], bool] = keep_high_precision,
    device: torch.device | str | None = None,
) -> list[str]:
    """Replaces the model's nn.Linear layers (except those `keep` names, and on CUDA those
    whose sides are not multiples of 16) by Fp8Linear, in place; returns the names swapped.

    With `device`, each weight is copied there to be quantised, one layer at a time, so a
    model held on the CPU reaches the GPU as fp8 without ever being there in bf16 whole."""
    swapped = []
    for name, linear in list(_linears(model)):
        if keep(name):
            continue
        if kernel != "emulated" and (linear.in_features % CUDA_ALIGN or linear.out_features % CUDA_ALIGN):
            continue
        _set_child(model, name, Fp8Linear(linear, kernel, granularity, device=device))
        swapped.append(name)
    return swapped


def _linears(model: nn.Module) -> Iterable[tuple[str, nn.Linear]]:
    for name, mod in model.named_modules():
        if type(mod) is nn.Linear:
            yield name, mod


def _set_child(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
