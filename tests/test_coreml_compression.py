"""Compressed weights: every coremltools.optimize.coreml weight compression (linear int8
per-channel / per-tensor, iOS 18 per-block int8 / int4, palettization 8/6/4/2 bits, k-means
and uniform, per-tensor, grouped-channel, vector and per-channel-scaled; pruning; joint
sparse + palettized / quantized) decompresses in the interpreter to exactly the weights of
coremltools' own ``decompress_weights``, and runs to exactly its outputs.
The ops' documented examples are checked on their own."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from speechport.coreml import Interpreter, load_program
from tests.helpers import i32, run_op

rng = np.random.default_rng(0)
W1 = rng.standard_normal((64, 32)).astype(np.float32)
W2 = rng.standard_normal((32, 64)).astype(np.float32)


AFFINE, SHIFT_SCALE = "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"
LUT, SPARSE = "constexpr_lut_to_dense", "constexpr_sparse_to_dense"
LUT_SPARSE, SPARSE_SHIFT = "constexpr_lut_to_sparse", "constexpr_sparse_blockwise_shift_scale"


def _q(**options: Any) -> tuple[str, str, dict[str, Any]]:
    return "linear_quantize_weights", "OpLinearQuantizerConfig", options


def _p(**options: Any) -> tuple[str, str, dict[str, Any]]:
    return "palettize_weights", "OpPalettizerConfig", options


PRUNE = ("prune_weights", "OpMagnitudePrunerConfig", {"target_sparsity": 0.5})
SYM, ASYM = "linear_symmetric", "linear"
GROUPED = "per_grouped_channel"

# name -> (target, (compressor, config class, options), joint with pruning, constexpr ops)
STRATEGIES: dict[str, tuple[str, tuple[str, str, dict[str, Any]], bool, set[str]]] = {
    "int8-channel": (
        "iOS17",
        _q(mode=SYM, dtype="int8", granularity="per_channel"),
        False,
        {AFFINE},
    ),
    "uint8-tensor": (
        "iOS17",
        _q(mode=ASYM, dtype="uint8", granularity="per_tensor"),
        False,
        {AFFINE},
    ),
    "int8-channel-18": (
        "iOS18",
        _q(mode=SYM, dtype="int8", granularity="per_channel"),
        False,
        {SHIFT_SCALE},
    ),
    "int8-block": (
        "iOS18",
        _q(mode=ASYM, dtype="int8", granularity="per_block", block_size=16),
        False,
        {SHIFT_SCALE},
    ),
    "int4-block": (
        "iOS18",
        _q(mode=ASYM, dtype="int4", granularity="per_block", block_size=8),
        False,
        {SHIFT_SCALE},
    ),
    "int4-block-sym": (
        "iOS18",
        _q(mode=SYM, dtype="int4", granularity="per_block", block_size=8),
        False,
        {SHIFT_SCALE},
    ),
    "kmeans-8": ("iOS17", _p(mode="kmeans", nbits=8), False, {LUT}),
    "kmeans-6": ("iOS17", _p(mode="kmeans", nbits=6), False, {LUT}),
    "uniform-4": ("iOS17", _p(mode="uniform", nbits=4), False, {LUT}),
    "kmeans-4-18": ("iOS18", _p(mode="kmeans", nbits=4), False, {LUT}),
    "kmeans-4-grouped": (
        "iOS18",
        _p(mode="kmeans", nbits=4, granularity=GROUPED, group_size=16),
        False,
        {LUT},
    ),
    "uniform-6-grouped": (
        "iOS18",
        _p(mode="uniform", nbits=6, granularity=GROUPED, group_size=8),
        False,
        {LUT},
    ),
    "kmeans-2-vector": ("iOS18", _p(mode="kmeans", nbits=2, cluster_dim=2), False, {LUT}),
    "kmeans-4-scaled": (
        "iOS18",
        _p(mode="kmeans", nbits=4, enable_per_channel_scale=True),
        False,
        {LUT, SHIFT_SCALE},
    ),
    "pruned": ("iOS17", PRUNE, False, {SPARSE}),
    "pruned-18": ("iOS18", PRUNE, False, {SPARSE}),
    "pruned+kmeans-4": ("iOS18", _p(mode="kmeans", nbits=4), True, {LUT_SPARSE, SPARSE}),
    "pruned+int8": (
        "iOS18",
        _q(mode=ASYM, dtype="int8", granularity="per_channel"),
        True,
        {SPARSE_SHIFT, SPARSE},
    ),
    "pruned+int4-block": (
        "iOS18",
        _q(mode=ASYM, dtype="int4", granularity="per_block", block_size=8),
        True,
        {SPARSE_SHIFT, SPARSE},
    ),
}


def _compressed(name: str, precision: str, root: Path) -> tuple[Path, Path]:
    """The two-layer MLP compressed with ``name``, and coremltools' decompression of it."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (coremltools idiom)

    target_name, (compressor, config_class, options), joint, _ = STRATEGIES[name]
    target = getattr(ct.target, target_name)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 32))], opset_version=target)  # type: ignore[untyped-decorator]
    def program(x: Any) -> Any:
        return mb.linear(x=mb.relu(x=mb.linear(x=x, weight=W1)), weight=W2, name="y")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            program,
            convert_to="mlprogram",
            minimum_deployment_target=target,
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            skip_model_load=True,
        )
        config = getattr(cto, config_class)(weight_threshold=1, **options)
        if joint:
            pruner = cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=1)
            model = cto.prune_weights(model, cto.OptimizationConfig(global_config=pruner))
        compress = getattr(cto, compressor)
        kwargs = {"joint_compression": True} if joint else {}
        compressed = compress(model, cto.OptimizationConfig(global_config=config), **kwargs)
        decompressed = cto.decompress_weights(compressed)
    paths = root / f"{name}.mlpackage", root / f"{name}-decompressed.mlpackage"
    compressed.save(str(paths[0]))
    decompressed.save(str(paths[1]))
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_decompressed_weights_equal_coremltools(name: str, precision: str, tmp_path: Path) -> None:
    packed, reference = _compressed(name, precision, tmp_path)
    ours, theirs = Interpreter(load_program(packed)), Interpreter(load_program(reference))
    emitted = {op.type for op in ours.program.ops() if op.type.startswith("constexpr_")}
    assert emitted == STRATEGIES[name][3]
    linear_weights = [
        op.inputs["weight"][0].name for op in ours.program.ops() if op.type == "linear"
    ]
    assert len(linear_weights) == 2
    for weight in linear_weights:
        assert weight is not None
        got, want = ours.constants[weight], theirs.constants[weight]
        assert got.dtype == want.dtype == (np.float16 if precision == "fp16" else np.float32)
        np.testing.assert_array_equal(got, want)
    x = rng.standard_normal((2, 32)).astype(np.float32)
    np.testing.assert_array_equal(ours.run({"x": x})["y"], theirs.run({"x": x})["y"])


# -- the ops' documented examples -------------------------------------------------------------


def test_lut_to_dense_per_group_example() -> None:
    """iOS 18 ``constexpr_lut_to_dense`` docs, case 1: two 2-bit tables over the rows."""
    indices = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], np.uint8).reshape(6, 2)
    lut = np.array([1, 5, 9, 13, 2, 10, 18, 26], np.float16).reshape(2, 1, 4, 1)
    (got,) = run_op("constexpr_lut_to_dense", {"indices": indices, "lut": lut}, ("fp16",))
    want = [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]]
    np.testing.assert_array_equal(got, np.array(want, np.float16))


@pytest.mark.parametrize("axis", [1, 2])
def test_lut_to_dense_vector_example(axis: int) -> None:
    """Docs case 2: 1-bit vector palettization, vectors of 3 laid along ``vector_axis``."""
    indices = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], np.uint8)
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    lut = np.array([a, b], np.float32).reshape(1, 1, 1, 2, 3)
    (got,) = run_op(
        "constexpr_lut_to_dense", {"indices": indices, "lut": lut, "vector_axis": i32(axis)}
    )
    pick = {0: a, 1: b}
    if axis == 1:
        want = np.stack(
            [np.concatenate([np.array([pick[i] for i in row]).T for row in m], 0) for m in indices]
        )
        assert want.shape == (2, 6, 2)
    else:
        want = np.stack([[np.concatenate([pick[i] for i in row]) for row in m] for m in indices])
        assert want.shape == (2, 2, 6)
    np.testing.assert_array_equal(got, want)


def test_ios16_lut_packs_indices_lsb_first() -> None:
    """iOS 16 docs: 2-bit indices of shape (5,) packed as byte0 = i3 i2 i1 i0 (MSB..LSB)."""
    # i0..i4 = 0, 3, 2, 1, 3  ->  byte0 = 01 10 11 00, byte1 = xx xx xx 11
    packed = np.array([0b01101100, 0b00000011], np.uint8)
    lut = np.array([10, 20, 30, 40], np.float32)
    (got,) = run_op(
        "constexpr_lut_to_dense",
        {"indices": packed, "lut": lut, "shape": np.array([5], np.uint32)},
    )
    np.testing.assert_array_equal(got, [10, 40, 30, 20, 40])


def test_sparse_blockwise_example() -> None:
    """iOS 18 ``constexpr_sparse_blockwise_shift_scale`` docs example."""
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]], np.uint8)
    data = np.array([10, 11, 3, 4, 5, 6, 7, 8, 9], np.int8)
    scale = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    offset = np.array([[1, 2, 3, 4]], np.int8)
    got_mask, values = run_op(
        "constexpr_sparse_blockwise_shift_scale",
        {"data_mask": mask, "nonzero_data": data, "scale": scale, "offset": offset},
        ("uint1", "fp32"),
    )
    np.testing.assert_array_equal(got_mask, mask)
    want = np.array([0.9, 1.8, 0.2, 0.4, 0.6, 0.9, 1.2, 0.7, 1.4], np.float32)
    np.testing.assert_allclose(values, want, rtol=1e-6)


def test_affine_dequantize_formula() -> None:
    q = np.array([[0, 255], [128, 7]], np.uint8)
    (got,) = run_op(
        "constexpr_affine_dequantize",
        {"quantized_data": q, "zero_point": np.array([128, 7], np.uint8),
         "scale": np.array([0.5, 2.0], np.float16), "axis": i32(0)},
        ("fp16",),
    )  # fmt: skip
    np.testing.assert_array_equal(got, np.array([[-64, 63.5], [242, 0]], np.float16))
