"""Front ends: a spec (`LogMelSpec`), its numpy implementation for the runtime, and its torch
implementation for export (`speechport.features.torch_frontend`, imported on demand so that
the runtime never needs torch)."""

from __future__ import annotations

from speechport.features.numpy_frontend import (
    LogMelFrontend,
    build_frontend,
    mel_filterbank,
    window_array,
)
from speechport.features.spec import (
    GIGAAM_V3,
    PARAKEET_TDT_V3,
    FeatureSpecError,
    LogMelSpec,
    nemo_spec,
)

__all__ = [
    "GIGAAM_V3",
    "PARAKEET_TDT_V3",
    "FeatureSpecError",
    "LogMelFrontend",
    "LogMelSpec",
    "build_frontend",
    "mel_filterbank",
    "nemo_spec",
    "window_array",
]
