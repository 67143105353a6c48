"""Loading checkpoints never runs code from them; bad checkpoints get clear errors and leave
nothing behind in the output directory."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from speechport.conversion import convert
from speechport.errors import CheckpointError, ExportError, SpeechportError
from speechport.families.gigaam import GigaAMFamily
from speechport.families.omegaconf_compat import omegaconf_globals, to_plain
from speechport.families.torch_checkpoint import load_torch_checkpoint
from tests.helpers import GIGAAM, checkpoint


class _RunsCode:
    """Pickles to ``os.system(<command>)``: what a malicious checkpoint does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_tensors_round_trip_in_every_dtype(tmp_path: Path) -> None:
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.tensor([1.5, -2.25, 3.0e-3], dtype=torch.bfloat16),
        "i64": torch.arange(6).reshape(2, 3),
        "i32": torch.arange(4, dtype=torch.int32),
        "bool": torch.tensor([True, False]),
        "view": torch.arange(12.0).reshape(3, 4)[:, 1:3],  # strided view of a larger storage
        "transposed": torch.arange(6.0).reshape(2, 3).t(),
        "scalar": torch.tensor(7.0),
    }
    path = tmp_path / "t.pt"
    torch.save({"state_dict": collections.OrderedDict(tensors), "meta": [1, "x", 2.5]}, path)
    loaded = load_torch_checkpoint(path)
    assert loaded["meta"] == [1, "x", 2.5]
    for name, tensor in tensors.items():
        got = loaded["state_dict"][name]
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_upstream_config_is_read_without_omegaconf() -> None:
    raw = load_torch_checkpoint(checkpoint("v3_rnnt"), extra_globals=omegaconf_globals())
    cfg = to_plain(raw["cfg"])
    assert cfg["model_name"] == "v3_rnnt"
    assert cfg["encoder"]["subsampling"] == "conv1d"
    assert cfg["decoding"]["vocabulary"][:3] == [" ", "а", "б"]
    assert len(cfg["decoding"]["vocabulary"]) == 33
    assert raw["state_dict"]["encoder.pre_encode.conv.0.weight"].shape == (96, 64, 5)


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"cfg": _RunsCode(f"touch {marker}"), "state_dict": {}}, path)
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match=r"refused to unpickle (posix|os)\.system") as err:
        convert("gigaam", path, out, quiet=True)
    assert str(path) in str(err.value)
    assert not marker.exists()
    assert _leftovers(tmp_path) == ["evil.ckpt"]


def test_torch_load_of_that_file_would_have_run_it(tmp_path: Path) -> None:
    """Guard against a vacuous test above: the payload really executes when unpickled
    without restrictions."""
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"cfg": _RunsCode(f"touch {marker}")}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PyTorch zip checkpoint"),
        (b"definitely not a checkpoint", "not a PyTorch zip checkpoint"),
    ],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        convert("gigaam", path, tmp_path / "out", quiet=True)
    assert _leftovers(tmp_path) == ["bad.ckpt"]


def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = checkpoint("v3_ctc").read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt|truncated") as err:
        convert("gigaam", path, tmp_path / "out", quiet=True)
    assert str(path) in str(err.value)
    assert _leftovers(tmp_path) == ["cut.ckpt"]


def test_corrupt_tensor_data(tmp_path: Path) -> None:
    """A storage member shorter than its tensors need."""
    path = tmp_path / "short.ckpt"
    with zipfile.ZipFile(checkpoint("v3_ctc")) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data/1"):
                data = data[:8]
            dst.writestr(info, data)
    with pytest.raises(CheckpointError, match="storage '1' holds 8 bytes"):
        GigaAMFamily().load(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="file not found"):
        convert("gigaam", tmp_path / "nope.ckpt", tmp_path / "out", quiet=True)
    assert _leftovers(tmp_path) == []


def test_checkpoint_of_another_model(tmp_path: Path) -> None:
    plain = tmp_path / "resnet.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match=r"not a GigaAM checkpoint.*'cfg' and 'state_dict'"):
        GigaAMFamily().load(plain)


def test_nemo_archive_given_as_gigaam(tmp_path: Path) -> None:
    path = tmp_path / "model.nemo"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("model_config.yaml")
        payload = b"target: nemo.collections.asr.models.EncDecRNNTBPEModel\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(CheckpointError, match="not a PyTorch zip checkpoint"):
        GigaAMFamily().load(path)


def _rewrite_cfg(tmp_path: Path, edit: Any) -> Path:
    """A copy of the v3_ctc fixture whose config went through ``edit`` (plain dicts in place
    of OmegaConf records; the loader reads both)."""
    raw = load_torch_checkpoint(checkpoint("v3_ctc"), extra_globals=omegaconf_globals())
    cfg = to_plain(raw["cfg"])
    state = {k: torch.from_numpy(np.array(v)) for k, v in raw["state_dict"].items()}
    edit(cfg, state)
    path = tmp_path / "edited.ckpt"
    torch.save({"cfg": cfg, "state_dict": state}, path)
    return path


def test_emotion_model_is_not_asr(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        cfg["head"] = {"_target_": "gigaam.decoder.EmoHead", "num_classes": 4}

    with pytest.raises(CheckpointError, match="not an ASR head"):
        GigaAMFamily().load(_rewrite_cfg(tmp_path, edit))


def test_v2_architecture_is_named(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        cfg["encoder"]["subsampling"] = "conv2d"

    with pytest.raises(CheckpointError, match=r"conv2d.*GigaAM v1/v2"):
        GigaAMFamily().load(_rewrite_cfg(tmp_path, edit))


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        del state["encoder.layers.1.norm_out.weight"]
        cfg["encoder"]["n_layers"] = 2

    with pytest.raises(CheckpointError, match=r"missing encoder.layers.1.norm_out.weight"):
        GigaAMFamily().load(_rewrite_cfg(tmp_path, edit))

    def wrong_size(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        cfg["encoder"]["d_model"] = 128

    with pytest.raises(CheckpointError, match="do not fit"):
        GigaAMFamily().load(_rewrite_cfg(tmp_path, wrong_size))


def test_e2e_checkpoint_needs_its_tokenizer(tmp_path: Path) -> None:
    lone = tmp_path / "v3_e2e_ctc.ckpt"
    lone.write_bytes(checkpoint("v3_e2e_ctc").read_bytes())
    with pytest.raises(CheckpointError, match="--tokenizer"):
        convert("gigaam", lone, tmp_path / "out", quiet=True)
    wrong = tmp_path / "other.model"
    wrong.write_bytes(b"not sentencepiece")
    with pytest.raises(CheckpointError, match="not a SentencePiece model"):
        convert("gigaam", lone, tmp_path / "out", tokenizer=wrong, quiet=True)
    assert _leftovers(tmp_path) == ["other.model", "v3_e2e_ctc.ckpt"]


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after some components were written removes the whole partial bundle."""
    import speechport.export.onnx as onnx_export

    calls = []

    def fail_on_joint(component: Any, path: Path, **kw: Any) -> None:
        calls.append(component.name)
        if component.name == "JointStep":
            raise ExportError("simulated converter crash", component=component.name)
        real(component, path, **kw)

    real = onnx_export.export_onnx
    monkeypatch.setattr(onnx_export, "export_onnx", fail_on_joint)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="simulated"):
        convert("gigaam", checkpoint("v3_rnnt"), out, formats="onnx", quiet=True)
    assert calls == ["Encoder", "DecoderStep", "JointStep"]
    assert _leftovers(tmp_path) == []


def test_existing_output_is_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(SpeechportError, match=r"already exists.*--force"):
        convert("gigaam", checkpoint("v3_ctc"), out, formats="onnx", quiet=True)
    with pytest.raises(SpeechportError, match="refusing to replace: it is not a bundle"):
        convert("gigaam", checkpoint("v3_ctc"), out, formats="onnx", quiet=True, overwrite=True)
    assert (out / "thesis.tex").read_text() == "mine"
    (out / "thesis.tex").unlink()
    convert("gigaam", checkpoint("v3_ctc"), out, formats="onnx", quiet=True, overwrite=True)
    assert (out / "v3_ctc.onnx").is_file()
    (out / "stale.txt").write_text("left by an older conversion")
    convert("gigaam", checkpoint("v3_ctc"), out, formats="onnx", quiet=True, overwrite=True)
    assert not (out / "stale.txt").exists(), "--force replaces a bundle whole"
    assert _leftovers(tmp_path) == ["bundle"]
    with pytest.raises(SpeechportError, match="cannot create the output's parent"):
        convert("gigaam", checkpoint("v3_ctc"), out / "v3_ctc.onnx" / "x", quiet=True)


def test_fixture_tokenizer_is_found_beside_the_checkpoint() -> None:
    loaded = GigaAMFamily().load(checkpoint("v3_e2e_rnnt"))
    assert loaded.tokenizer_path == GIGAAM / "tokenizer.model"


# --- hand-written pickles: what a hostile file can try ----------------------------------


def _pickle_op_string(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _pickle_int(value: int) -> bytes:
    return pickle.LONG1 + bytes([8]) + value.to_bytes(8, "little", signed=True)


def _tensor_pickle(
    offset: int, size: tuple[int, ...], stride: tuple[int, ...], numel: int
) -> bytes:
    def tup(*items: bytes) -> bytes:
        return pickle.MARK + b"".join(items) + pickle.TUPLE

    storage = (
        tup(
            _pickle_op_string("storage"),
            b"ctorch\nFloatStorage\n",
            _pickle_op_string("0"),
            _pickle_op_string("cpu"),
            _pickle_int(numel),
        )
        + pickle.BINPERSID
    )
    hooks = b"ccollections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE
    args = tup(
        storage,
        _pickle_int(offset),
        tup(*map(_pickle_int, size)),
        tup(*map(_pickle_int, stride)),
        pickle.NEWFALSE,
        hooks,
    )
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + pickle.REDUCE


def _archive(
    path: Path, body: bytes, data: bytes = b"", compress: int = zipfile.ZIP_STORED
) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        archive.writestr("archive/data.pkl", pickle.PROTO + b"\x02" + body + pickle.STOP)
        archive.writestr("archive/data/0", data)
    return path


@pytest.mark.parametrize(
    ("offset", "size", "stride", "message"),
    [
        (-4, (7,), (1,), "invalid tensor geometry"),
        (0, (4,), (-1,), "invalid tensor geometry"),
        (0, (3, 1 << 20), (0, 0), "repeats its elements"),  # a broadcast view: 3M elements
        (6, (4,), (1,), "reaches past its storage"),
    ],
)
def test_tensor_views_outside_their_storage_are_refused(
    tmp_path: Path, offset: int, size: tuple[int, ...], stride: tuple[int, ...], message: str
) -> None:
    data = np.arange(8, dtype="<f4").tobytes()
    path = _archive(tmp_path / "view.ckpt", _tensor_pickle(offset, size, stride, 8), data)
    with pytest.raises(CheckpointError, match=message):
        load_torch_checkpoint(path)


def test_a_pickle_cannot_modify_the_loader(tmp_path: Path) -> None:
    """BUILD on an allowed object (here: turning float storage into int storage) is refused,
    and a later load of a genuine checkpoint is untouched."""
    body = (
        b"ctorch\nFloatStorage\n"
        + pickle.EMPTY_DICT
        + _pickle_op_string("name")
        + _pickle_op_string("IntStorage")
        + pickle.SETITEM
        + pickle.BUILD
    )
    with pytest.raises(CheckpointError, match="modify a built-in loader object"):
        load_torch_checkpoint(_archive(tmp_path / "poison.ckpt", body))
    weights = load_torch_checkpoint(checkpoint("v3_ctc"), extra_globals=omegaconf_globals())
    weight = weights["state_dict"]["head.decoder_layers.0.weight"]
    assert weight.dtype == np.float32 and np.abs(weight).max() < 10


def test_compressed_tensor_data_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import speechport.families.torch_checkpoint as reader

    monkeypatch.setattr(reader, "MIN_INFLATE_BUDGET", 1 << 20)
    numel = 1 << 20  # 4 MB of zeros deflate to a few kB
    body = _tensor_pickle(0, (numel,), (1,), numel)
    path = _archive(tmp_path / "bomb.ckpt", body, bytes(4 * numel), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 50_000
    with pytest.raises(CheckpointError, match="inflates far beyond"):
        load_torch_checkpoint(path)
    monkeypatch.setattr(reader, "MIN_INFLATE_BUDGET", 16 << 20)
    assert load_torch_checkpoint(path).shape == (numel,)


def test_big_endian_archives_are_read_right(tmp_path: Path) -> None:
    path = tmp_path / "be.ckpt"
    values = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "archive/data.pkl",
            pickle.PROTO + b"\x02" + _tensor_pickle(0, (3,), (1,), 3) + pickle.STOP,
        )
        archive.writestr("archive/byteorder", "big")
        archive.writestr("archive/data/0", values.astype(">f4").tobytes())
    np.testing.assert_array_equal(load_torch_checkpoint(path), values)


@pytest.mark.parametrize("levels", [30])
def test_config_bombs_and_cycles_fail_fast(tmp_path: Path, levels: int) -> None:
    """A list holding the previous list twice, 30 levels deep (2^30 leaves if expanded), and
    a list containing itself: both end in a clear error, at once."""
    import time

    def checkpoint_with(cfg: bytes) -> bytes:  # {"cfg": <cfg>, "state_dict": {}}
        return (
            b"}" + _pickle_op_string("cfg") + cfg + b"s" + _pickle_op_string("state_dict") + b"}s"
        )

    laughs = b"(" + _pickle_op_string("x") + b"l"  # ["x"]
    for _ in range(levels):
        laughs += b"q\x00h\x00\x86"  # memoise it, fetch it again: a pair of the same object
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="not a mapping"):
        GigaAMFamily().load(_archive(tmp_path / "laughs.ckpt", checkpoint_with(laughs)))
    cycle = b"]q\x00h\x00a"  # an empty list, memoised, appended to itself
    with pytest.raises(CheckpointError, match="reference cycle"):
        GigaAMFamily().load(_archive(tmp_path / "cycle.ckpt", checkpoint_with(cycle)))
    assert time.perf_counter() - started < 5


def test_malformed_state_dict_and_config_values(tmp_path: Path) -> None:
    def state_is_a_list(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        state.clear()

    path = _rewrite_cfg(tmp_path, state_is_a_list)
    raw = load_torch_checkpoint(path, extra_globals=omegaconf_globals())
    raw["state_dict"] = list(raw["state_dict"])
    torch.save({"cfg": raw["cfg"], "state_dict": ["a", "b"]}, path)
    with pytest.raises(CheckpointError, match="not a mapping of names to tensors"):
        GigaAMFamily().load(path)

    def heads(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        cfg["encoder"]["n_heads"] = 5

    with pytest.raises(CheckpointError, match="not divisible by n_heads 5") as err:
        GigaAMFamily().load(_rewrite_cfg(tmp_path, heads))
    assert "edited.ckpt: config:" in str(err.value)

    def not_a_number(cfg: dict[str, Any], state: dict[str, Any]) -> None:
        cfg["encoder"]["d_model"] = "big"

    with pytest.raises(CheckpointError, match="config is malformed"):
        GigaAMFamily().load(_rewrite_cfg(tmp_path, not_a_number))
