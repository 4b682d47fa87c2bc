"""What a request may ask of the engine: the rules KleinEngine.check_inputs enforces and
`ready` advertises (protocol/PROTOCOL.md: `capabilities`, `geometry`). Defined here once
for the engine; the gateway applies the same numbers before a request is queued.

Torch-free, so the simulated engine can read them without loading torch.
"""

# Every FLUX.2 [klein] VAE downsamples by 8 and its transformer reads 2×2 latent patches, so
# image sides are multiples of 16. KleinEngine derives its own multiple from the model's
# configs; the simulated engine and `generate`'s reference preparation use this one.
PIXEL_MULTIPLE = 16
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_REFERENCE_IMAGES = 4
MAX_STEPS = 100
# The samplers a request may name; sampling.STEPS implements each.
SAMPLERS = ("euler", "res_2s")
# LoRA adapters per request and the range of their scales (contract §7).
MAX_LORAS = 3
MAX_LORA_SCALE = 4.0
