"""Train the tiny Parakeet-TDT fixture into a model that hears words, for long-audio tests.

The upstream-made fixture (tests/data/nemo/parakeet_tdt.nemo: NeMo's v3 architecture with
shrunk sizes, 183 BPE pieces) memorises its four clips. This script trains the same
architecture, config and tokenizer (starting from its weights) with speechport's own torch
model and a TDT loss written here (scripts/transducer_loss.py) on English sentences of a
41-word vocabulary (scripts/espeak_words.py), synthesised on the fly by libespeak-ng with
random voices, rates and pitches, so that its output depends on the words it hears:

- a *recording* is random sentences of 3-9 words (never one of the held-out test
  sentences of tests/data/parakeet_words/index.json), each at a random gain (0.5-1.5),
  with pauses of 0.05-1.2 s (any number of samples) before, between and after them;
- three batches in four hold 18 short examples: one sentence with 0-0.3 s of silence
  around it, as a clip is heard alone (an eighth), a whole recording of at most 6 s (an
  eighth), or a 2-6 s crop of a recording; every fourth batch holds 6 crops the length of
  a window of a long recording: 15 s (the bundle's window; half of them) or 8-15 s. Crops
  are cut at any sample. A word (its loud part, above -60 dB) counts when at least 75 %
  of it is inside the crop and must not be heard when at most 25 % is; a crop edge that
  cuts a word in between is drawn again (words espeak-ng speaks as one, such as "of the",
  count together). Short crops teach most per second of compute (the lattice grows with
  frames x labels); the window-length batches keep 15 s windows familiar.

The targets are the counted words' SentencePiece ids. The result is written as a ``.nemo``
archive (tar: the source's ``model_config.yaml`` and tokenizer files unchanged, and
``model_weights.ckpt`` = the source's state dict with the trained weights under NeMo's
names), which ``speechport convert parakeet`` reads like any NeMo archive.

Usage: PYTHONPATH=src python scripts/train_parakeet_words.py OUT.nemo [--steps N]
(tests/data/parakeet_words/PROVENANCE.md has the exact commands used for the fixture).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.espeak_words import SR, Espeak, random_sentence, random_voice
from scripts.transducer_loss import tdt_loss

from speechport.families.nemo_archive import read_nemo_archive
from speechport.families.parakeet import ParakeetFamily, ParakeetModel
from speechport.families.parakeet.model import nemo_to_speechport
from speechport.features.torch_frontend import TorchLogMel
from speechport.tokenizer import load_sentencepiece

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "data" / "nemo" / "parakeet_tdt.nemo"
HELD_OUT = ROOT / "tests" / "data" / "parakeet_words" / "index.json"
HEARD, UNHEARD = 0.75, 0.25  # share of a word's loud part inside a crop
WINDOW = 15.0


class Recordings:
    """Random recordings of random sentences, with every word's loud part."""

    def __init__(self, rng: np.random.Generator, held_out: set[str]) -> None:
        self.rng = rng
        self.held_out = held_out
        self.espeak = Espeak()

    def sentence(self) -> tuple[list[str], np.ndarray, list[tuple[int, int]]]:
        while True:
            words = random_sentence(self.rng)
            if " ".join(words) not in self.held_out:
                spoken = self.espeak.say(words, *random_voice(self.rng))
                return words, spoken.audio, spoken.loud

    def recording(self, seconds: float) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """Sentences with pauses until ``seconds`` (at least one sentence)."""
        rng = self.rng
        parts: list[np.ndarray] = []
        words: list[tuple[int, int, str]] = []
        position = 0
        while not parts or position < seconds * SR:
            pause = int(rng.uniform(0.05, 1.2) * SR)
            said, audio, loud = self.sentence()
            position += pause
            words += [(position + a, position + b, w) for (a, b), w in zip(loud, said, strict=True)]
            parts += [np.zeros(pause, np.float32), audio * np.float32(rng.uniform(0.5, 1.5))]
            position += audio.size
        parts.append(np.zeros(int(rng.uniform(0.05, 1.2) * SR), np.float32))
        return np.concatenate(parts), words

    def example(self, window: bool) -> tuple[np.ndarray, list[str]]:
        """A crop of 8-15 s (half of them 15 s) when ``window``; else one sentence with
        0-0.3 s of silence around it (an eighth), a whole recording of at most 6 s (an
        eighth) or a crop of 2-6 s."""
        rng = self.rng
        if window:
            seconds = WINDOW if rng.random() < 0.5 else rng.uniform(8.0, WINDOW)
        elif rng.random() < 0.125:  # one sentence as a clip is heard alone
            said, audio, _ = self.sentence()
            before, after = (np.zeros(int(rng.uniform(0, 0.3) * SR), np.float32) for _ in "ab")
            gain = np.float32(rng.uniform(0.5, 1.5))
            return np.concatenate([before, audio * gain, after]), said
        elif rng.random() < 0.125 / 0.875:
            audio, words = self.recording(float(rng.uniform(0.0, 3.0)))
            if audio.size <= 6 * SR:
                return audio, [w for _, _, w in words]
            seconds = 6.0
        else:
            seconds = rng.uniform(2.0, 6.0)
        length = int(seconds * SR)
        audio, words = self.recording(length / SR + 2.0)
        start = self._edge(words, 0, audio.size - length)
        stop = start + length
        if not self._clean(words, stop):
            stop = self._edge(words, start + length // 2, start + length)
        heard = [w for a, b, w in words if _share(a, b, start, stop) >= HEARD]
        return audio[start:stop], heard

    def _edge(self, words: list[tuple[int, int, str]], low: int, high: int) -> int:
        """A sample in [low, high] that cuts no word between the thresholds."""
        for _ in range(100):
            edge = int(self.rng.integers(low, high + 1))
            if self._clean(words, edge):
                return edge
        return high

    @staticmethod
    def _clean(words: list[tuple[int, int, str]], edge: int) -> bool:
        return all(not UNHEARD < (edge - a) / (b - a) < HEARD for a, b, _ in words if a < edge < b)


def _share(a: int, b: int, start: int, stop: int) -> float:
    return max(0, min(b, stop) - max(a, start)) / (b - a)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=18)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--init", type=Path, default=SOURCE, help="start from this .nemo")
    parser.add_argument("--verbose", action="store_true", help="print every step")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(args.seed)
    held_out = {c["text"] for c in json.loads(HELD_OUT.read_text(encoding="utf-8"))["clips"]}
    loaded = ParakeetFamily().load(args.init)
    model = loaded.model
    assert isinstance(model, ParakeetModel)
    config = loaded.config.config
    frontend = TorchLogMel(config.frontend)
    with tempfile.TemporaryDirectory() as scratch:
        spm_path = Path(scratch) / "tokenizer.model"
        spm_path.write_bytes(loaded.config.tokenizer_model)
        sp = load_sentencepiece(spm_path)
    blank, durations = config.vocab_size, config.durations
    data = Recordings(rng, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1
    )
    model.train()
    began = time.time()
    for step in range(args.steps):
        window = step % 4 == 3  # a batch of window-length crops every fourth step
        batch = [data.example(window) for _ in range(args.batch // 3 if window else args.batch)]
        lengths = torch.tensor([a.size for a, _ in batch])
        audio = torch.zeros(len(batch), int(lengths.max()))
        for i, (a, _) in enumerate(batch):
            audio[i, : a.size] = torch.from_numpy(a)
        targets = [sp.EncodeAsIds(" ".join(words)) for _, words in batch]
        label_lengths = torch.tensor([len(t) for t in targets])
        labels = torch.zeros(len(batch), max(1, int(label_lengths.max())), dtype=torch.int64)
        for i, t in enumerate(targets):
            labels[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
        with torch.no_grad():
            features, feature_length = frontend(audio, lengths)
        encoded, frames = model.encoder(features, feature_length.to(torch.int32))
        start = torch.full((len(batch), 1), blank, dtype=torch.int64)
        emb = model.decoder.embed(torch.cat([start, labels], dim=1))
        dec, _ = model.decoder.lstm(emb.transpose(0, 1))
        logits = model.joint(encoded.transpose(1, 2).unsqueeze(2), dec.transpose(0, 1).unsqueeze(1))
        nll = tdt_loss(
            logits[..., : blank + 1],
            logits[..., blank + 1 :],
            labels,
            frames,
            label_lengths,
            durations,
            blank,
        )
        loss = nll.sum() / (label_lengths + 1).sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        if step % 25 == 0 or step == args.steps - 1 or args.verbose:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - began:.0f} s)", flush=True)
        if step % 200 == 199 or step == args.steps - 1:
            save(model, args.init, args.out)
    print(f"wrote {args.out}")


def save(model: torch.nn.Module, source: Path, out: Path) -> None:
    """``source`` with the trained weights: every member copied unchanged but the state
    dict, whose tensors (under NeMo's names) are replaced by the model's."""
    archive = read_nemo_archive(source)
    ours = model.state_dict()
    state = {}
    for name, value in archive.state_dict.items():
        mine = nemo_to_speechport(name)
        tensor = ours[mine] if mine in ours else torch.from_numpy(np.array(value))
        state[name] = tensor.detach().clone().contiguous()
    weights = io.BytesIO()
    torch.save(state, weights)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(source) as src, tarfile.open(partial, "w") as dst:
        for member in src.getmembers():
            info = tarfile.TarInfo(member.name)
            info.mode, info.mtime, info.type = member.mode, 0, member.type
            if member.isdir():
                dst.addfile(info)
                continue
            payload = (
                weights.getvalue()
                if Path(member.name).name == "model_weights.ckpt"
                else src.extractfile(member).read()  # type: ignore[union-attr]
            )
            info.size = len(payload)
            dst.addfile(info, io.BytesIO(payload))
    partial.replace(out)


if __name__ == "__main__":
    main()
