"""Same seed, same bytes (contract §5): what the engine sets so that an image does not depend
on the machine's core count or on which kernels a GPU library happens to pick.

CPU: PyTorch splits elementwise work into one chunk per thread, and each chunk's tail is
computed by scalar code instead of the vector code (exp, SiLU, … differ in the last bit);
for 1×1 convolutions it picks oneDNN with several threads and its own kernel with one
(aten/src/ATen/native/Convolution.cpp, `use_mkldnn`). MKL's matrix products also change with the
thread count for some shapes (tiny's 4608×8 by 8×24: 2 and 3 threads differ), and MKL may
choose to use fewer threads than asked (MKL_DYNAMIC, on by default), so a fixed count
above one would not hold either. So 1, 2 and 3 threads gave pixels that differ by one unit
here and there (the tiny model at 256² and 512×384: up to 1/255 in 7 and 27 pixels). With
one intra-op thread the order of every operation is fixed by the shapes alone: the same
bytes on any number of cores. The price is CPU speed (tiny at the API defaults needs about
3.6 s of one core), which only tests and demos pay: a GPU does the model's work.

GPU (`go_fast: false`, the exact reference path): PyTorch's reproducibility recipe
(docs/source/notes/randomness.rst): cuDNN without benchmarking and with deterministic
algorithms only, torch's deterministic algorithms where an op has a choice, and a fixed
cuBLAS workspace (CUBLAS_WORKSPACE_CONFIG, set before the first cuBLAS call). The go_fast path
keeps the defaults; it is close to the reference (a stated tolerance), not bit-exact.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch

# Intra-op threads on a CPU device (see above).
CPU_THREADS = 1
# cuBLAS's documented setting for reproducible results with a workspace per stream.
CUBLAS_WORKSPACE = ":4096:8"


def pin_cpu_threads(device: torch.device) -> None:
    """On a CPU device, computes on CPU_THREADS threads (process-wide: the engine process owns
    the device)."""
    if device.type == "cpu":
        torch.set_num_threads(CPU_THREADS)


def prepare_cuda(device: str) -> None:
    """Before anything runs on a CUDA device: the cuBLAS workspace that deterministic mode
    requires (an operator's own CUBLAS_WORKSPACE_CONFIG is kept)."""
    if str(device).startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def reference_flags(device: torch.device, enabled: bool) -> Iterator[None]:
    """Deterministic kernels on a CUDA device while the reference path runs; everything is
    restored after, so the go_fast path keeps its faster choices. warn_only: an op without a
    deterministic kernel warns in the log rather than failing the request."""
    if not enabled or device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn.benchmark, cudnn.deterministic = False, True
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def deterministic_reference_path(generate_batch):
    """For KleinEngine.generate_batch: runs a batch of `go_fast: false` jobs (they never share a
    batch with go_fast ones, batch.shape_key) under reference_flags."""

    @functools.wraps(generate_batch)
    def wrapper(self, jobs, *args, **kwargs):
        with reference_flags(self.device, enabled=bool(jobs) and not jobs[0].req.go_fast):
            return generate_batch(self, jobs, *args, **kwargs)

    return wrapper
