"""Silero VAD (snakers4/silero-vad), 16 kHz: weights from the installed package.

The ``silero-vad`` package ships the model as a TorchScript archive (``silero_vad.jit``, the
model its ``load_silero_vad()`` returns), ONNX files, and a ``silero_vad_16k.safetensors``.
speechport reads the TorchScript archive *as data* (its pickled tensors through the
restricted unpickler; the TorchScript code in it is never loaded) or a safetensors file.
By default it converts the archive: in silero-vad 6.x the safetensors file holds other,
older weights than ``silero_vad.jit`` and ``silero_vad.onnx`` (checked at every default
conversion, and noted when they differ).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint, refuse_options
from speechport.families.safetensors_reader import read_safetensors
from speechport.families.silero_vad.bundle import plan_bundle
from speechport.families.silero_vad.model import CONTEXT, HOP, N_FFT, SAMPLE_RATE, SileroVAD
from speechport.families.torch_checkpoint import InertRecord, load_torch_checkpoint
from speechport.fsutil import sha256_file

FAMILY = "silero-vad"
PACKAGE = "silero_vad"
_ENCODER_STRIDES = (1, 2, 2, 1)


def package_data_dir() -> Path:
    """``silero_vad/data`` of the installed package, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise CheckpointError(
            "the silero-vad package is not installed, and no --checkpoint was given",
            component="silero_vad",
            hint="pip install silero-vad (conversion only), or pass --checkpoint "
            "silero_vad.jit or silero_vad_16k.safetensors",
        )
    return Path(locations[0]) / "data"


def package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("silero-vad")
    except metadata.PackageNotFoundError:
        return None


class SileroVadFamily:
    """Family ``silero_vad``: the 16 kHz model, exported in three forms."""

    name = FAMILY

    def load(
        self, checkpoint: Path | None = None, *, tokenizer: Path | None = None
    ) -> LoadedCheckpoint:
        notes: list[str] = []
        if checkpoint is None:
            data = package_data_dir()
            checkpoint = data / "silero_vad.jit"
            version = package_version()
            notes.append(f"weights of silero-vad {version or '?'} ({checkpoint.name})")
        checkpoint = Path(checkpoint)
        if checkpoint.suffix == ".safetensors":
            weights, variant = _from_safetensors(checkpoint), "silero_vad_16k"
        else:
            weights, variant = _from_torchscript(checkpoint)
            notes.extend(_compare_with_safetensors(checkpoint, weights))
        model = SileroVAD(torch.tensor(weights.pop("stft.basis")))
        try:
            model.load_state_dict({k: torch.tensor(v) for k, v in weights.items()}, strict=False)
        except RuntimeError as exc:
            raise CheckpointError(
                f"weights do not fit Silero VAD: {str(exc).splitlines()[-1].strip()}",
                path=checkpoint,
            ) from exc
        missing = sorted(set(model.state_dict()) - set(weights) - {"stft.basis"})
        if missing:
            raise CheckpointError(f"weights missing for {missing[:4]}", path=checkpoint)
        model.eval()
        return LoadedCheckpoint(
            family=FAMILY,
            variant=variant,
            model=model,
            config={"source": checkpoint.name, "package_version": package_version()},
            checkpoint=checkpoint,
            tokenizer_path=None,
            checkpoint_sha256=sha256_file(checkpoint),
            notes=notes,
        )

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        refuse_options(self.name, options)
        return plan_bundle(loaded)


def _from_torchscript(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Tensors of the 16 kHz model inside a Silero TorchScript archive, read as data."""
    root = load_torch_checkpoint(path, inert_prefixes=("__torch__.",))

    def fail(what: str) -> CheckpointError:
        return CheckpointError(
            f"not a Silero VAD TorchScript archive the converter knows: {what}",
            path=path,
            hint="pass silero_vad.jit from the silero-vad package (v5 or v6), or its "
            "silero_vad_16k.safetensors",
        )

    try:
        model = root.get("_model") if isinstance(root, InertRecord) else None
        if model is None:
            raise fail("no 16 kHz model (_model) in it")
        if (model.get("sample_rate"), model.get("context_size_samples")) != (SAMPLE_RATE, CONTEXT):
            raise fail(
                f"sample rate {model.get('sample_rate')}, context "
                f"{model.get('context_size_samples')}"
            )
        stft = model.get("stft")
        if (stft.get("filter_length"), stft.get("hop_length")) != (N_FFT, HOP):
            raise fail(f"STFT of {stft.get('filter_length')} / {stft.get('hop_length')}")
        weights = {"stft.basis": stft.get("forward_basis_buffer")}
        encoder = model.get("encoder")
        for i, stride in enumerate(_ENCODER_STRIDES):
            block = encoder.get(str(i))
            if block.get("stride") != stride:
                raise fail(f"encoder block {i} has stride {block.get('stride')}")
            conv = block.get("reparam_conv")
            weights[f"encoder.conv{i + 1}.weight"] = conv.get("weight")
            weights[f"encoder.conv{i + 1}.bias"] = conv.get("bias")
        decoder = model.get("decoder")
        rnn = decoder.get("rnn")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            weights[f"decoder.lstm_cell.{name}"] = rnn.get(name)
        head = decoder.get("decoder").get("2")
        weights["decoder.final_conv.weight"] = head.get("weight")
        weights["decoder.final_conv.bias"] = head.get("bias")
    except (KeyError, AttributeError, TypeError) as exc:
        raise fail(str(exc)) from exc
    return {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}, "silero_vad_16k"


def _from_safetensors(path: Path) -> dict[str, np.ndarray]:
    tensors = read_safetensors(path)
    names = {
        "stft_conv.weight": "stft.basis",
        "final_conv.weight": "decoder.final_conv.weight",
        "final_conv.bias": "decoder.final_conv.bias",
    }
    weights: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if key in names:
            weights[names[key]] = value
        elif key.startswith("conv"):
            weights[f"encoder.{key}"] = value
        elif key.startswith("lstm_cell."):
            weights[f"decoder.{key}"] = value
        else:
            raise CheckpointError(
                f"unexpected tensor {key!r}: not a Silero VAD 16 kHz safetensors file", path=path
            )
    if "stft.basis" not in weights:
        raise CheckpointError("no stft_conv.weight: not a Silero VAD safetensors file", path=path)
    return {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}


def _compare_with_safetensors(jit: Path, weights: dict[str, Any]) -> list[str]:
    other = jit.with_name("silero_vad_16k.safetensors")
    if not other.is_file():
        return []
    theirs = _from_safetensors(other)
    same = all(
        k in theirs and theirs[k].shape == np.shape(v) and np.array_equal(theirs[k], v)
        for k, v in weights.items()
    )
    if same:
        return [f"{other.name} holds the same weights"]
    return [
        f"{other.name} beside it holds different weights than {jit.name} (the model "
        f"load_silero_vad() and silero_vad.onnx use); converted {jit.name}"
    ]


__all__ = ["FAMILY", "SileroVadFamily", "package_data_dir"]
