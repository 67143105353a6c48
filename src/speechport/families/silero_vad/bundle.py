"""The bundle of Silero VAD: the model in three forms, all with explicit state.

- ``vad`` (``SileroVad``): 64 + 512 samples per call. Its ONNX file keeps the layout of
  Silero's own ``silero_vad.onnx`` (``input``, ``state``, ``sr`` -> ``output``, ``stateN``),
  so runtimes written for that file load it unchanged.
- ``vad_long`` (``SileroVad256ms``): 64 + 4096 samples per call, eight steps inside.
- ``vad_stft`` / ``vad_encoder`` / ``vad_decoder``: the three stages apart, for hosts that
  want to run them on different engines.
"""

from __future__ import annotations

import torch

from speechport.families.base import BundlePlan, ExportableComponent, LoadedCheckpoint, OnnxLayout
from speechport.families.silero_vad.model import (
    CHUNK,
    CONTEXT,
    HIDDEN,
    N_FFT,
    SAMPLE_RATE,
    SUB_CHUNKS,
    WINDOW,
    SileroVAD,
    SileroVAD256ms,
)
from speechport.manifest import ComponentSpec, ConstantInput, StatePair, TensorSpec, VadSpec

FAMILY = "silero-vad"
DEFAULTS = {
    "threshold": 0.5,  # the exit threshold defaults to threshold - 0.15 (at least 0.01)
    "min_speech_ms": 250.0,
    "min_silence_ms": 100.0,
    "speech_pad_ms": 30.0,
}
_STATE = (2, 1, HIDDEN)
_FRAMES = (WINDOW + CONTEXT - N_FFT) // (N_FFT // 2) + 1  # STFT frames of one window: 4
_SR = (ConstantInput("sr", "int64", SAMPLE_RATE),)
# Core ML precision of every component that computes the STFT (the whole model, the 256 ms
# form and the STFT stage), whatever --precision says: in fp16 the power re**2 + im**2 of
# quiet chunks (~1e-7) falls below fp16's normal range (6.1e-5) and loses 20-50 % of its
# value, which moved speech probabilities by up to 0.26 under the MIL interpreter's fp16
# emulation. The encoder and decoder stages keep the bundle's precision.
STFT_COREML_PRECISION: str | None = "fp32"


def _state_specs() -> tuple[TensorSpec, TensorSpec]:
    # Not "state": Core ML reserves that name (iOS 18 stateful models) and renames it.
    return (
        TensorSpec("state_in", _STATE, "float32", "LSTM (h, c); zeros at the start"),
        TensorSpec("state_out", _STATE, "float32"),
    )


def _batch_axes(spec: TensorSpec, axis: int = 0) -> TensorSpec:
    return TensorSpec(spec.name, spec.shape, spec.dtype, dynamic_axes={axis: "batch"})


def _silero_layout(
    file_name: str,
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    width: int,
    extra_outputs: tuple[TensorSpec, ...],
) -> OnnxLayout:
    """Silero's own ONNX layout: ``input``, ``state`` (and ``sr``, ignored) -> ``output``,
    [extra outputs,] ``stateN``, batch dimensions left open."""
    return OnnxLayout(
        file_name,
        module,
        example,
        (
            TensorSpec("input", (1, width), "float32", dynamic_axes={0: "batch"}),
            TensorSpec("state", _STATE, "float32", dynamic_axes={1: "batch"}),
        ),
        (
            TensorSpec("output", (1, 1), "float32", dynamic_axes={0: "batch"}),
            *extra_outputs,
            TensorSpec("stateN", _STATE, "float32", dynamic_axes={1: "batch"}),
        ),
        constants=_SR,
    )


def plan_bundle(loaded: LoadedCheckpoint) -> BundlePlan:
    model = loaded.model
    assert isinstance(model, SileroVAD)
    audio = TensorSpec(
        "audio",
        (1, WINDOW),
        "float32",
        f"{CONTEXT} samples of context + {CHUNK} new, 16 kHz in [-1, 1]",
    )
    state_in, state_out = _state_specs()
    prob = TensorSpec("prob", (1, 1), "float32", "speech probability of the new samples")
    zeros = torch.zeros(_STATE)
    example_audio = torch.zeros(1, WINDOW)
    pair = (StatePair("state_in", "state_out"),)

    vad = ExportableComponent(
        ComponentSpec(
            "SileroVad",
            "vad",
            "Silero VAD on one 576-sample window",
            (audio, state_in),
            (prob, state_out),
            pair,
            kind="vad",
        ),
        model,
        (example_audio, zeros),
        _silero_layout("silero_vad.onnx", model, (example_audio, zeros), WINDOW, ()),
        coreml_precision=STFT_COREML_PRECISION,
    )

    long_window = CONTEXT + SUB_CHUNKS * CHUNK
    long_model = SileroVAD256ms(model).eval()
    long_audio = TensorSpec(
        "audio",
        (1, long_window),
        "float32",
        f"{CONTEXT} samples of context + {SUB_CHUNKS} x {CHUNK} new",
    )
    long_outputs = (
        TensorSpec("prob", (1, 1), "float32", "noisy-OR of the eight: 1 - prod(1 - p_i)"),
        TensorSpec("probs", (1, SUB_CHUNKS), "float32", f"probability of each {CHUNK} samples"),
        state_out,
    )
    example_long = torch.zeros(1, long_window)
    vad_long = ExportableComponent(
        ComponentSpec(
            "SileroVad256ms",
            "vad_long",
            f"Silero VAD on {SUB_CHUNKS} windows at once (256 ms of new audio)",
            (long_audio, state_in),
            long_outputs,
            pair,
            kind="vad_batch",
        ),
        long_model,
        (example_long, zeros),
        _silero_layout(
            "silero_vad_256ms.onnx",
            long_model,
            (example_long, zeros),
            long_window,
            (TensorSpec("probs", (1, SUB_CHUNKS), "float32", dynamic_axes={0: "batch"}),),
        ),
        coreml_precision=STFT_COREML_PRECISION,
    )

    magnitude = TensorSpec(
        "magnitude",
        (1, N_FFT // 2 + 1, _FRAMES),
        "float32",
        "STFT magnitude (reflect-padded window, hop 128)",
    )
    features = TensorSpec("features", (1, HIDDEN), "float32")
    stages = [
        (
            "SileroVadStft",
            "vad_stft",
            "frontend",
            "STFT magnitude (a convolution with the model's basis)",
            model.stft,
            (audio,),
            (magnitude,),
            (),
            (example_audio,),
        ),
        (
            "SileroVadEncoder",
            "vad_encoder",
            "vad_encoder",
            "four convolutions with ReLU",
            model.encoder,
            (magnitude,),
            (features,),
            (),
            (torch.zeros(1, N_FFT // 2 + 1, _FRAMES),),
        ),
        (
            "SileroVadDecoder",
            "vad_decoder",
            "vad_decoder",
            "LSTM cell and sigmoid head",
            model.decoder,
            (features, state_in),
            (prob, state_out),
            pair,
            (torch.zeros(1, HIDDEN), zeros),
        ),
    ]
    modular = []
    for name, role, kind, description, module, inputs, outputs, state, example in stages:
        file_name = f"silero_vad_{role.removeprefix('vad_')}.onnx"
        modular.append(
            ExportableComponent(
                ComponentSpec(name, role, description, inputs, outputs, state, kind=kind),
                module,
                example,
                OnnxLayout(file_name, module, example, inputs, outputs),
                coreml_precision=STFT_COREML_PRECISION if kind == "frontend" else None,
            )
        )

    version = loaded.config.get("package_version")
    return BundlePlan(
        family=FAMILY,
        variant=loaded.variant,
        task="vad",
        sample_rate=SAMPLE_RATE,
        frontend={"kind": "waveform", "sample_rate": SAMPLE_RATE},
        components=[vad, vad_long, *modular],
        vad=VadSpec(CHUNK, CONTEXT, SUB_CHUNKS, dict(DEFAULTS)),
        description=(
            f"Silero VAD (16 kHz) from silero-vad {version or '?'} "
            f"({loaded.config.get('source')}): speech probability per 32 ms, with explicit "
            "LSTM state; unified (576 samples), 256 ms (4,160 samples) and three-stage forms."
        ),
        extras={
            "upstream": "snakers4/silero-vad (MIT)",
            "onnx_compatibility": (
                "`silero_vad.onnx` keeps the layout of Silero's own file (`input` [batch, "
                "576], `state` [2, batch, 128], `sr` -> `output`, `stateN`), so runtimes "
                "written for it (Silero's OnnxWrapper, onnx-asr's `load_vad(\"silero\", "
                "path)`) load it unchanged at 16 kHz. The model is the 16 kHz one only: `sr` "
                "is accepted and ignored (Silero's own file also serves 8 kHz)."
            ),
        },
    )
