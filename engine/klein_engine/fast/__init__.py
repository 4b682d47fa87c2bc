"""The go_fast path: fp8 transformer matmuls (fp8.py), torch.compile with a persistent cache
(compile.py), the fastest attention kernel (attention.py), assembled per engine (path.py).

`go_fast: false` runs none of it: FastPath hands it the untouched bf16 reference transformer
and VAE decoder.
"""
