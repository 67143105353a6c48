"""Loading checkpoints never runs code from them; bad checkpoints get clear errors and leave
nothing behind in the output directory."""

from __future__ import annotations

import collections
import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from speechport.convert import convert
from speechport.errors import CheckpointError, ExportError
from speechport.families.gigaam import GigaAMFamily
from speechport.families.omegaconf_compat import omegaconf_globals, to_plain
from speechport.families.torch_checkpoint import load_torch_checkpoint
from tests.conftest import GIGAAM, checkpoint


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
    (out / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match=r"already exists.*--force"):
        convert("gigaam", checkpoint("v3_ctc"), out, formats="onnx", quiet=True)
    assert (out / "keep.txt").read_text() == "mine"
    convert("gigaam", checkpoint("v3_ctc"), out, formats="onnx", quiet=True, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "v3_ctc.onnx").is_file()
    assert _leftovers(tmp_path) == ["bundle"]


def test_fixture_tokenizer_is_found_beside_the_checkpoint() -> None:
    loaded = GigaAMFamily().load(checkpoint("v3_e2e_rnnt"))
    assert loaded.tokenizer_path == GIGAAM / "tokenizer.model"
