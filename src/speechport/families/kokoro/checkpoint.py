"""Kokoro checkpoints and voice packs, read as data through the restricted unpickler.

A checkpoint (``kokoro-v1_0.pth``) is ``torch.save`` of a dict of per-module state dicts
(``bert``, ``bert_encoder``, ``predictor``, ``text_encoder``, ``decoder``), keys sometimes
prefixed ``module.`` (saved from DataParallel). Weight-normed convolutions keep
``weight_g``/``weight_v``; they are folded into ``weight`` exactly as ``weight_norm`` computes
it at every upstream forward. Bidirectional LSTM tensors (``..._reverse``) go to the backward
half of speechport's `MaskedBiLSTM`.

A voice pack (``voices/af_heart.pt``) is ``torch.save`` of a float tensor ``[510, 1, 256]``:
one style row per phoneme count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechport.errors import CheckpointError
from speechport.families.kokoro.config import VOICE_ROWS, KokoroConfig
from speechport.families.torch_checkpoint import load_torch_checkpoint

MODULES = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
_LSTM_KEY = re.compile(
    r"^(?P<prefix>.*)\.(?P<name>(weight|bias)_(ih|hh)_l0)(?P<reverse>_reverse)?$"
)
# Buffers some transformers versions save with ALBERT; not weights.
_IGNORED = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """All weights of a Kokoro checkpoint under speechport's module names, float32."""
    root = load_torch_checkpoint(path)
    hint = "pass a Kokoro checkpoint such as kokoro-v1_0.pth (hexgrad/Kokoro-82M)"
    if not isinstance(root, Mapping) or not set(MODULES) <= set(root):
        keys = sorted(root)[:6] if isinstance(root, Mapping) else type(root).__name__
        raise CheckpointError(
            f"not a Kokoro checkpoint: expected the modules {', '.join(MODULES)}, found {keys}",
            path=path,
            hint=hint,
        )
    flat: dict[str, np.ndarray] = {}
    for module in MODULES:
        state = root[module]
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{module} is not a state dict", path=path, hint=hint)
        for key, value in state.items():
            name = key[len("module.") :] if key.startswith("module.") else key
            if not isinstance(value, np.ndarray):
                raise CheckpointError(
                    f"{module}.{name} is not a tensor", path=path, component=module, hint=hint
                )
            flat[f"{module}.{name}"] = value
    return _upstream_to_speechport(flat, path)


def _upstream_to_speechport(flat: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in flat.items():
        if key in _IGNORED:
            continue
        if key.endswith("weight_v"):
            continue
        if key.endswith("weight_g"):
            stem = key[: -len("_g")]
            direction = flat.get(stem + "_v")
            if direction is None:
                raise CheckpointError(
                    f"{key} has no matching {stem}_v", path=path, component=key.split(".")[0]
                )
            folded = torch._weight_norm(
                torch.from_numpy(np.array(direction, dtype=np.float32)),
                torch.from_numpy(np.array(value, dtype=np.float32)),
                0,
            )
            out[stem] = folded.numpy()
            continue
        match = _LSTM_KEY.match(key)
        if match:
            half = "backward_lstm" if match["reverse"] else "forward_lstm"
            out[f"{match['prefix']}.{half}.{match['name']}"] = value
            continue
        out[key] = value
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def check_weights_fit(
    weights: Mapping[str, np.ndarray], expected: Mapping[str, Any], path: Path
) -> None:
    """Shapes agree with the config's architecture; the first that does not is named."""
    for name, tensor in expected.items():
        if name in weights and tuple(weights[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{name} has shape {tuple(weights[name].shape)}, the config describes "
                f"{tuple(tensor.shape)}",
                path=path,
                component=name.split(".")[0],
                hint="pass the config.json that belongs to this checkpoint",
            )


def read_voice_pack(path: Path, config: KokoroConfig | None = None) -> np.ndarray:
    """A voice pack as float32 ``[510, 256]`` (the ``[510, 1, 256]`` tensor squeezed)."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"not a voice pack ({exc})", path=path) from exc
    else:
        data = load_torch_checkpoint(path)
    dim = config.voice_dim if config is not None else 256
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise CheckpointError(
            "not a voice pack: expected one float tensor [510, 1, 256]",
            path=path,
            hint="pass Kokoro's voices/*.pt files",
        )
    pack = data.reshape(data.shape[0], -1) if data.ndim == 3 and data.shape[1] == 1 else data
    if pack.shape != (VOICE_ROWS, dim):
        raise CheckpointError(
            f"voice pack of shape {tuple(data.shape)}, expected [{VOICE_ROWS}, 1, {dim}]",
            path=path,
            hint="pass Kokoro's voices/*.pt files",
        )
    if not np.isfinite(pack).all():
        raise CheckpointError("voice pack holds NaN or infinite values", path=path)
    return np.ascontiguousarray(pack, dtype=np.float32)


__all__ = ["MODULES", "check_weights_fit", "read_state_dict", "read_voice_pack"]
