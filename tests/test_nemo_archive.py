""".nemo archives: read safely, and bad archives refused with clear errors that leave
nothing behind (no temporary directory, no partial bundle)."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from speechport.cli import main
from speechport.errors import CheckpointError
from speechport.families.nemo_archive import read_nemo_archive
from speechport.families.parakeet import ParakeetFamily

NEMO = Path(__file__).parent / "data" / "nemo"
TDT = NEMO / "parakeet_tdt.nemo"


def _members(source: Path = TDT) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(source) as archive:
        out = []
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            out.append((member, handle.read() if handle else None))
        return out


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _scratch_dirs() -> set[str]:
    scratch = Path(tempfile.gettempdir())
    return {p.name for p in scratch.iterdir() if p.name.startswith("speechport-")}


def test_reads_config_weights_and_tokenizer() -> None:
    archive = read_nemo_archive(TDT, wanted=("tokenizer.model_path",))
    assert archive.config["target"].endswith("EncDecRNNTBPEModel")
    assert archive.state_dict["joint.joint_net.2.weight"].shape == (189, 32)
    model = archive.referenced(archive.config["tokenizer"]["model_path"], "tokenizer")
    assert model[:2] == b"\n\x0e"  # a serialized SentencePiece ModelProto
    assert len(archive.files) == 1


def _with_extra(extra: tuple[tarfile.TarInfo, bytes | None]) -> Callable[[Path], Path]:
    return lambda path: _write(path, [*_members(), extra])


def _without(name: str) -> Callable[[Path], Path]:
    return lambda path: _write(path, [m for m in _members() if not m[0].name.endswith(name)])


def _with_config(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        members = []
        for info, data in _members():
            if info.name.endswith("model_config.yaml"):
                assert data is not None
                config = yaml.safe_load(data)
                edit(config)
                info, data = _file(info.name, yaml.safe_dump(config).encode())
            members.append((info, data))
        return _write(path, members)

    return make


def _device(path: Path) -> Path:
    info = tarfile.TarInfo("./dev")
    info.type = tarfile.CHRTYPE
    return _write(path, [*_members(), (info, None)])


def _not_a_tar(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 not a tar")
    return path


BAD = {
    "dotdot": (_with_extra(_file("../evil.txt", b"x")), "points outside the archive"),
    "nested-dotdot": (_with_extra(_file("./a/../../evil.txt", b"x")), "points outside"),
    "absolute": (_with_extra(_file("/tmp/evil.txt", b"x")), "has an absolute path"),
    "symlink": (_with_extra(_link("./link", "/etc/passwd", tarfile.SYMTYPE)), "is a link"),
    "hardlink": (_with_extra(_link("./hard", "/etc/passwd", tarfile.LNKTYPE)), "is a link"),
    "device": (_device, "is a device, FIFO or other special file"),
    "no-weights": (_without("model_weights.ckpt"), "has no model_weights.ckpt"),
    "no-config": (_without("model_config.yaml"), "has no model_config.yaml"),
    "unknown-class": (
        _with_config(lambda c: c.update(target="nemo.collections.asr.models.EncDecCTCModelBPE")),
        "unknown model class 'nemo.collections.asr.models.EncDecCTCModelBPE'",
    ),
    "no-tokenizer": (_without("_tokenizer.model"), "which the archive does not hold"),
    "not-a-tar": (_not_a_tar, "not a tar"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_archives_are_refused_and_leave_nothing(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make, expected = BAD[case]
    bad = make(tmp_path / f"{case}.nemo")
    # A temp directory of this test's own: another test process converting a .nemo at the
    # same time makes and removes its scratch directories in the shared one.
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    before = _scratch_dirs()
    with pytest.raises(CheckpointError) as info:
        ParakeetFamily().load(bad)
    message = str(info.value)
    assert expected in message
    assert str(bad) in message  # the error names the file
    assert info.value.hint  # and says what to do
    assert _scratch_dirs() == before
    assert not (tmp_path.parent / "evil.txt").exists()


def test_cli_convert_of_a_bad_archive_leaves_no_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "evil.nemo", [*_members(), _file("../evil.txt", b"x")])
    out = tmp_path / "bundle"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["convert", "parakeet", "--checkpoint", str(bad), "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing an unsafe archive" in err and "evil.nemo" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no bundle, no partial directory


def test_weights_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    bad = _with_config(lambda c: c["encoder"].update(n_layers=3))(tmp_path / "layers.nemo")
    with pytest.raises(CheckpointError, match=r"missing encoder\.layers\.2\.") as info:
        ParakeetFamily().load(bad)
    assert info.value.component == "state_dict"


def test_unsupported_encoder_options_are_named(tmp_path: Path) -> None:
    bad = _with_config(lambda c: c["encoder"].update(self_attention_model="abs_pos"))(
        tmp_path / "abs.nemo"
    )
    with pytest.raises(CheckpointError, match="self_attention_model 'abs_pos' is not supported"):
        ParakeetFamily().load(bad)
