"""The MIL interpreter on real Core ML packages: torch modules converted fp32 and fp16 run
like torch; fp16 programs round at op boundaries; an encoder length computed in fp16 is off
by one above 2048 frames; compressed weights decompress exactly as
coremltools does; unsupported ops are named."""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechport.coreml import Interpreter, load_program
from speechport.errors import BackendError
from speechport.export import compat
from speechport.export.coreml import jit_trace
from speechport.nn.subsampling import Conv1dSubsampling
from tests.helpers import save_torch_module


class ParakeetLikeBlock(nn.Module):
    """The op mix of the ASR exports: 2-d striding and depthwise convolutions, batch norm,
    layer norm, linear, relative-shift slicing, attention, LSTM, arg-max."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 4, 1)
        self.proj = nn.Linear(4 * 5, 16)
        self.norm = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)
        self.conv1 = nn.Conv1d(16, 16, 5, padding=2, groups=16)
        self.bn = nn.BatchNorm1d(16)
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.out = nn.Linear(8, 6)
        self.bn.load_state_dict(
            {
                **self.bn.state_dict(),
                "running_mean": torch.linspace(-0.5, 0.5, 16),
                "running_var": torch.linspace(0.5, 1.5, 16),
            }
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.relu(self.sub(x.unsqueeze(1)))  # [B, 4, T/2, 10]
        h = F.silu(self.pw(self.dw(h)))  # [B, 4, T/4, 5]
        b, c, t, f = h.shape
        h = self.norm(self.proj(h.permute(0, 2, 1, 3).reshape(b, t, c * f)))
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        scores = torch.matmul(q, k.transpose(1, 2)) / 4.0
        shifted = F.pad(scores, (1, 0)).reshape(b, t + 1, t)[:, 1:].reshape(b, t, t)  # rel-shift
        h = h + torch.matmul(torch.softmax(scores + 0.1 * shifted, dim=-1), v)
        h = h + self.bn(F.silu(self.conv1(h.transpose(1, 2)))).transpose(1, 2)
        y, _ = self.lstm(F.gelu(h))
        logits = self.out(y).log_softmax(-1)
        return logits, logits.argmax(-1).to(torch.int32), torch.topk(logits, 2, dim=-1).values


@pytest.fixture(scope="module")
def block_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    module = ParakeetLikeBlock().eval()
    x = torch.randn(2, 16, 20)
    root = tmp_path_factory.mktemp("block")
    paths = {
        p: save_torch_module(module, (x,), ["x"], root / f"{p}.mlpackage", fp16=p == "fp16")
        for p in ("fp32", "fp16")
    }
    with torch.no_grad():
        reference = [t.numpy() for t in module(x)]
    return {"paths": paths, "x": x.numpy(), "reference": reference}


def _run(path: Path, **feeds: np.ndarray) -> list[np.ndarray]:
    program = load_program(path)
    outputs = Interpreter(program).run(feeds)
    return [outputs[name] for name in program.output_names]


def test_converted_torch_block_fp32_equals_torch(block_packages: dict[str, Any]) -> None:
    interpreter = Interpreter(load_program(block_packages["paths"]["fp32"]))
    assert interpreter.precision == "fp32"
    types = {op.type for op in interpreter.program.ops()}
    assert {"conv", "lstm", "layer_norm", "batch_norm", "matmul", "softmax", "pad"} <= types
    logits, best, top2 = _run(block_packages["paths"]["fp32"], x=block_packages["x"])
    want_logits, want_best, want_top2 = block_packages["reference"]
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=2e-5)
    np.testing.assert_array_equal(best, want_best)
    np.testing.assert_allclose(top2, want_top2, rtol=1e-5, atol=2e-5)


def test_converted_torch_block_fp16_is_torch_within_fp16_rounding(
    block_packages: dict[str, Any],
) -> None:
    """fp16 rounds every op output to 11 significant bits (relative 4.9e-4); over this
    block's ~40 ops the log-probs (magnitude ~2) stay within 2e-2 of fp32 torch."""
    interpreter = Interpreter(load_program(block_packages["paths"]["fp16"]))
    assert interpreter.precision == "fp16"
    logits, best, _ = _run(block_packages["paths"]["fp16"], x=block_packages["x"])
    want_logits, want_best, _ = block_packages["reference"]
    error = np.abs(logits - want_logits).max()
    assert 1e-4 < error < 2e-2, error  # fp16 is emulated (not fp32), and close
    margin = np.sort(want_logits, axis=-1)[..., -1] - np.sort(want_logits, axis=-1)[..., -2]
    clear = margin > 4e-2  # where the top two are further apart than the fp16 error
    np.testing.assert_array_equal(best[clear], want_best[clear])


class AddTiny(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1e-4


def test_fp16_program_rounds_each_op_output(tmp_path: Path) -> None:
    """1 + 1e-4 is 1.0001 in fp32 and exactly 1 in fp16 (spacing 2**-10 at 1)."""
    x = torch.ones(1, 3)
    got = {
        p: _run(
            save_torch_module(
                AddTiny(), (x,), ["x"], tmp_path / f"{p}.mlpackage", fp16=p == "fp16"
            ),
            x=x.numpy(),
        )[0]
        for p in ("fp32", "fp16")
    }
    assert got["fp16"].dtype == np.float16  # no output type was forced: the program says fp16
    np.testing.assert_array_equal(got["fp16"], np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(got["fp32"], np.full((1, 3), np.float32(1) + np.float32(1e-4)))


# -- an encoder length in fp16: off by one above 2048 frames --------------------------------


class FloatLength(nn.Module):
    """encoded_len as a float formula: two stride-2 stages of ``floor((L - 1) / 2) + 1``."""

    def forward(self, length: torch.Tensor) -> torch.Tensor:
        n = length.float()
        for _ in range(2):
            n = torch.floor((n - 1) / 2) + 1
        return n.to(torch.int32)


class IntegerLength(nn.Module):
    """The project's encoder length: GigaAM's subsampling, integer ops."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = Conv1dSubsampling(8, 8, kernel_size=5, num_stages=2)

    def forward(self, length: torch.Tensor) -> torch.Tensor:
        return self.sub.output_length(length)


def _length_package(module: nn.Module, path: Path, *, fp16: bool, patched: bool = True) -> Path:
    """Convert ``module`` for every length 1..2999 at once; ``patched=False`` leaves out the
    project's integer floor-division patch (coremltools' own aten::div conversion)."""
    import coremltools as ct

    lengths = torch.arange(1, 3000, dtype=torch.int32)
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = jit_trace(module.eval(), (lengths,))
        stack.enter_context(compat._scalar_casts_under_numpy2())
        stack.enter_context(compat._hide_progress_bars())
        if patched:
            stack.enter_context(compat._integer_floor_division())
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="length", shape=(2999,), dtype=np.int32)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            skip_model_load=True,
        )
    model.save(str(path))
    return path


EXPECTED = np.array([(((n - 1) // 2 + 1) - 1) // 2 + 1 for n in range(1, 3000)], np.int32)
LENGTHS = np.arange(1, 3000, dtype=np.int32)


def test_fp16_float_length_of_a_30s_window_is_off_by_one(tmp_path: Path) -> None:
    """2999 feature frames: fp16 holds 3000, and the float formula gives 751, not 750."""
    fp16 = _run(
        _length_package(FloatLength(), tmp_path / "f16.mlpackage", fp16=True), length=LENGTHS
    )[0]
    fp32 = _run(
        _length_package(FloatLength(), tmp_path / "f32.mlpackage", fp16=False), length=LENGTHS
    )[0]
    np.testing.assert_array_equal(fp32, EXPECTED)
    assert EXPECTED[-1] == 750 and fp16[-1] == 751
    wrong = fp16 != EXPECTED
    assert LENGTHS[wrong].min() > 2048  # every length fp16 holds exactly comes out right
    assert set(np.unique(fp16[wrong] - EXPECTED[wrong]).tolist()) <= {-1, 1}


def test_integer_length_is_exact_in_fp16_with_the_projects_patch(tmp_path: Path) -> None:
    package = _length_package(IntegerLength(), tmp_path / "int.mlpackage", fp16=True)
    np.testing.assert_array_equal(_run(package, length=LENGTHS)[0], EXPECTED)
    types = {op.type for op in load_program(package).ops()}
    assert "floor_div" in types and "real_div" not in types


def test_without_the_patch_coremltools_divides_lengths_in_fp16(tmp_path: Path) -> None:
    """coremltools' own aten::div casts to float: 2052 frames -> 514 instead of 513."""
    package = _length_package(IntegerLength(), tmp_path / "raw.mlpackage", fp16=True, patched=False)
    got = _run(package, length=LENGTHS)[0]
    assert got[2052 - 1] == 514 and EXPECTED[2052 - 1] == 513
    wrong = LENGTHS[got != EXPECTED]
    assert wrong.min() > 2048


# -- unsupported ops --------------------------------------------------------------------------


def test_unsupported_op_in_a_package_is_named_with_its_place(tmp_path: Path) -> None:
    import coremltools as ct

    source = save_torch_module(
        AddTiny(), (torch.ones(1, 3),), ["x"], tmp_path / "ok.mlpackage", fp16=False
    )
    spec = ct.utils.load_spec(str(source))
    block = spec.mlProgram.functions["main"].block_specializations["CoreML7"]
    index, op = next((i, op) for i, op in enumerate(block.operations) if op.type == "add")
    op.type = "add_v2"
    broken = tmp_path / "broken.mlpackage"
    ct.models.MLModel(
        spec, weights_dir=str(source / "Data/com.apple.CoreML/weights"), skip_model_load=True
    ).save(str(broken))
    with pytest.raises(BackendError) as info:
        Interpreter(load_program(broken))
    message = str(info.value)
    assert str(broken) in message
    assert (
        f"op 'add_v2' (main op #{index}, output {op.outputs[0].name}) is not supported" in message
    )


def test_neural_network_models_are_refused(tmp_path: Path) -> None:
    import coremltools as ct
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder(
        [("x", ct.models.datatypes.Array(2))], [("y", ct.models.datatypes.Array(2))]
    )
    builder.add_activation("relu", "RELU", "x", "y")
    path = tmp_path / "nn.mlmodel"
    ct.models.MLModel(builder.spec, skip_model_load=True).save(str(path))
    with pytest.raises(BackendError, match="not an ML Program"):
        load_program(path)


def test_missing_package_and_missing_input(tmp_path: Path, block_packages: dict[str, Any]) -> None:
    with pytest.raises(BackendError, match="not found"):
        load_program(tmp_path / "nothing.mlpackage")
    interpreter = Interpreter(load_program(block_packages["paths"]["fp32"]))
    with pytest.raises(BackendError, match="input 'x' was not given"):
        interpreter.run({})
    with pytest.raises(BackendError, match=r"input 'x' has shape \[2, 16\]"):
        interpreter.run({"x": np.zeros((2, 16), np.float32)})
