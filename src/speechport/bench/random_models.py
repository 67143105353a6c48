"""Full-size architectures with seeded random weights, for benchmarks (no download)."""

from __future__ import annotations

from pathlib import Path

from speechport.families.base import LoadedCheckpoint

RANDOM_WEIGHTS = Path("random-weights")


def random_gigaam(variant: str, *, seed: int = 0) -> LoadedCheckpoint:
    """GigaAM v3 ``variant`` at full size (``full_size_config``) with random weights; e2e
    variants have no vocabulary (a benchmark gives them a tokenizer if it decodes)."""
    import torch

    from speechport.families.gigaam import GigaAMConfig, build_model, full_size_config

    config = GigaAMConfig.from_upstream(full_size_config(variant))
    torch.manual_seed(seed)
    model, _ = build_model(config, None)
    return LoadedCheckpoint("gigaam", variant, model, config, RANDOM_WEIGHTS, None, "-")
