"""The runtime path runs a bundle with numpy + onnxruntime only: torch, coremltools, onnx and
yaml are blocked from import in a fresh interpreter, and the CLI still transcribes, detects
speech and describes bundles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import GIGAAM, gigaam_clip

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "coremltools", "onnx", "yaml"):
            raise ImportError(f"{name} is blocked: the runtime must not need it")
sys.meta_path.insert(0, Block())
from speechport.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(*args: str | Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_transcribe_vad_and_info_without_torch(
    gigaam_bundles: dict[str, Path], vad_bundle: Path
) -> None:
    clip = GIGAAM / "audio" / "clip1.wav"
    text = _run("transcribe", gigaam_bundles["v3_e2e_rnnt"], clip)
    assert text.strip() == gigaam_clip("v3_e2e_rnnt", 1).expected["text"]
    assert _run("transcribe", gigaam_bundles["v3_ctc"], clip, "--vad", vad_bundle).strip()
    assert len(_run("vad", vad_bundle, clip).splitlines()) == 2  # a pause at the comma
    assert "SileroVad (vad):" in _run("info", vad_bundle)
