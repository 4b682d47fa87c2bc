"""fp8 (e4m3) quantisation: round trips, the matmul error bound, the _scaled_mm scale
convention, and the module swap on `tiny` (CPU, emulated path)."""

import copy

import pytest
import torch
from torch import nn

from klein_engine.fast.fp8 import (
    CUDA_ALIGN,
    E4M3_MAX,
    SUBNORMAL_HALF_SPACING,
    UNIT_ROUNDOFF,
    Fp8Linear,
    cuda_matmul,
    dequantize,
    emulated_matmul,
    fp8_support,
    keep_high_precision,
    quantize_activation,
    quantize_weight,
    swap_linears,
)

U, D = UNIT_ROUNDOFF, SUBNORMAL_HALF_SPACING


def gen(seed):
    return torch.Generator("cpu").manual_seed(seed)


def test_weight_round_trip_is_within_half_an_e4m3_step_per_channel():
    w = torch.randn(96, 160, generator=gen(0)) * torch.logspace(-3, 2, 96)[:, None]  # channels of very different size
    w8, scale = quantize_weight(w)
    assert w8.dtype == torch.float8_e4m3fn and scale.shape == (96,)
    # The largest entry of each row maps to exactly 448: no overflow, full range used.
    assert torch.equal(w8.float().abs().amax(dim=1), torch.full((96,), E4M3_MAX))
    err = (dequantize(w8, scale) - w).abs()
    bound = U * w.abs() + D * scale[:, None]
    assert (err <= bound * (1 + 1e-6)).all()
    # Per-channel scales matter: the small rows keep their relative precision.
    assert ((err.norm(dim=1) / w.norm(dim=1)) < 0.04).all()


@pytest.mark.parametrize("granularity", ["tensor", "row"])
def test_activation_round_trip(granularity):
    x = torch.randn(64, 128, generator=gen(1)) * 3
    x8, scale = quantize_activation(x, granularity)
    assert scale.shape == ((1, 1) if granularity == "tensor" else (64, 1))
    err = (dequantize(x8, scale) - x).abs()
    assert (err <= (U * x.abs() + D * scale) * (1 + 1e-6)).all()
    zeros, zscale = quantize_activation(torch.zeros(4, 16), granularity)
    assert torch.equal(dequantize(zeros, zscale), torch.zeros(4, 16))


def elementwise_bound(x, w, granularity):
    """|Σ x̂ŵ − Σ xw| ≤ Σ (u|x| + δx)((1+u)|w| + δw) + |x|(u|w| + δw), per output element."""
    _, sx = quantize_activation(x, granularity)
    _, sw = quantize_weight(w)
    dx, dw = D * sx, D * sw[None, :]  # (M,1) or (1,1); (1,N)
    ax, aw = x.abs(), w.abs()
    return (U * ax @ ((1 + U) * aw).t() + dx * ((1 + U) * aw.sum(1))[None, :] + (U * ax.sum(1, keepdim=True) + dx * x.shape[1]) * dw
            + U * ax @ aw.t() + ax.sum(1, keepdim=True) * dw)


@pytest.mark.parametrize("granularity", ["tensor", "row"])
def test_emulated_matmul_error_is_bounded(granularity):
    x = torch.randn(200, 256, generator=gen(2), dtype=torch.float64).float()
    w = torch.randn(320, 256, generator=gen(3)) * 0.05
    w8, sw = quantize_weight(w)
    got = emulated_matmul(x, w8, sw, granularity)
    want = x @ w.t()
    assert ((got - want).abs() <= elementwise_bound(x, w, granularity) * (1 + 1e-5) + 1e-6).all()
    rel = ((got - want).norm() / want.norm()).item()
    print(f"fp8 emulated matmul, Gaussian data, {granularity} activation scale: relative error {rel:.4f}")
    assert rel < 0.05  # two e4m3 roundings of ~2.6 % rms each, independent: ~3.7 %


def test_row_scales_survive_an_outlier_token():
    """Why KLEIN_FP8_ACT_SCALE=row exists. e4m3 keeps full relative precision for values down
    to 2^-6 in scaled units, i.e. down to max/28,672 (448·2^6): a token 10^5 times larger
    than the rest pushes them below that, into the subnormals, with a per-tensor scale."""
    x = torch.randn(64, 128, generator=gen(4))
    x[0] *= 1e5
    w = torch.randn(64, 128, generator=gen(5))
    w8, sw = quantize_weight(w)
    want = x @ w.t()
    rel = {g: ((emulated_matmul(x, w8, sw, g) - want)[1:].norm() / want[1:].norm()).item() for g in ("tensor", "row")}
    assert rel["row"] < 0.05 < rel["tensor"], rel


def test_scale_convention_matches_torch_scaled_mm():
    """The GPU path's call (`cuda_matmul`, tensorwise form) run through torch._scaled_mm's CPU
    kernel gives the emulated product: scales are dequantisation factors, weight transposed."""
    x = torch.randn(48, 64, generator=gen(6))
    w = torch.randn(32, 64, generator=gen(7))
    w8, sw = quantize_weight(w)
    got = cuda_matmul(x, w8, sw, "tensor", "tensorwise")
    want = emulated_matmul(x, w8, sw, "tensor")
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fp8_linear_keeps_the_linear_interface():
    lin = nn.Linear(64, 48, bias=True)
    with torch.no_grad():
        lin.bias.copy_(torch.randn(48, generator=gen(8)))
    q = Fp8Linear(lin, "emulated")
    x = torch.randn(2, 5, 64, generator=gen(9))
    y = q(x)
    assert y.shape == (2, 5, 48) and y.dtype == x.dtype
    assert (q.in_features, q.out_features) == (64, 48)
    ref = lin(x)
    assert ((y - ref).norm() / ref.norm()).item() < 0.05
    assert torch.allclose(q.dequantized_weight(), lin.weight.detach(), atol=float(lin.weight.detach().abs().max()) * U)
    assert set(dict(q.named_buffers())) == {"weight_fp8", "weight_scale", "bias"}


def test_capability_check_says_why_not_on_cpu():
    s = fp8_support("cpu")
    assert not s.ok and s.kernel is None and "CUDA" in s.reason


# ------------------------------------------------------------------ tiny model
@pytest.fixture(scope="module")
def tiny_transformer(tiny_path):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel.from_pretrained(str(tiny_path / "transformer")).eval()


def test_swap_keeps_embedders_modulation_and_output_in_high_precision(tiny_transformer):
    m = copy.deepcopy(tiny_transformer)
    swapped = swap_linears(m, "emulated")
    all_linears = [n for n, mod in tiny_transformer.named_modules() if isinstance(mod, nn.Linear)]
    assert swapped == [n for n in all_linears if not keep_high_precision(n)]
    assert {"transformer_blocks.0.attn.to_q", "transformer_blocks.0.ff.linear_in", "single_transformer_blocks.0.attn.to_qkv_mlp_proj"} <= set(swapped)
    for kept in ("x_embedder", "context_embedder", "proj_out", "norm_out.linear", "double_stream_modulation_img.linear"):
        assert type(m.get_submodule(kept)) is nn.Linear
    # On the GPU kernels, layers whose sides are not multiples of 16 stay in bf16.
    m2 = copy.deepcopy(tiny_transformer)
    for name in swap_linears(m2, "rowwise"):
        q = m2.get_submodule(name)
        assert q.in_features % CUDA_ALIGN == 0 and q.out_features % CUDA_ALIGN == 0


def transformer_inputs(model, seed, n_img=48, n_txt=20):
    g = gen(seed)
    c = model.config
    img_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(6.0), torch.arange(8.0), torch.zeros(1), indexing="ij"), -1).reshape(-1, 4)
    txt_ids = torch.stack([torch.zeros(n_txt), torch.zeros(n_txt), torch.zeros(n_txt), torch.arange(float(n_txt))], -1)
    return dict(hidden_states=torch.randn(1, n_img, c.in_channels, generator=g),
                encoder_hidden_states=torch.randn(1, n_txt, c.joint_attention_dim, generator=g),
                timestep=torch.tensor([0.7]), img_ids=img_ids, txt_ids=txt_ids, guidance=None, return_dict=False)


# Stated tolerance of the fp8 transformer on `tiny` (float32, emulated): relative L2 error of
# one forward's output. The widths are 8, so each dot product averages few roundings; the
# full-size model's figure is measured on the GPU (bench/engine.py --fidelity).
TINY_FORWARD_REL_TOL = 0.005


def test_swapped_tiny_transformer_stays_within_tolerance(tiny_transformer):
    m = copy.deepcopy(tiny_transformer)
    swap_linears(m, "emulated")
    with torch.inference_mode():
        for seed in (0, 1, 2):
            inputs = transformer_inputs(tiny_transformer, seed)
            ref = tiny_transformer(**inputs)[0]
            got = m(**inputs)[0]
            rel = ((got - ref).norm() / ref.norm()).item()
            print(f"tiny transformer, fp8 emulated vs float32, seed {seed}: relative error {rel:.4f}")
            assert 0 < rel < TINY_FORWARD_REL_TOL
