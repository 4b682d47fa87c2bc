"""FLUX.2 [klein] inference engine for klein-serve."""

__version__ = "0.1.0"
