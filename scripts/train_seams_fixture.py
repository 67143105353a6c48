"""Fine-tune the tiny GigaAM v3 CTC fixture into a model that hears words, not clips.

The upstream fixtures (tests/data/gigaam) were trained on clips 0-2 exactly as cut: they
recognise a clip from how it starts and change their output when it is shifted by a few
tens of milliseconds or heard next to another clip. Long-audio tests must place clips at
any offset of a window, beside other speech and cut by window edges, so they need a model
whose output depends on the words it hears. This script continues training the upstream
``v3_ctc`` fixture (same architecture, same config, same 33-letter vocabulary) with the CTC
loss on two kinds of examples (a quarter scenes, three quarters crops):

- *scenes*: 1 to 3 pieces (at most 6.5 s in all), each a whole clip or a run of its
  phrases, in random order, with random silence (0 to 0.8 s, any number of samples)
  before, between and after them;
- *crops*: four whole clips with 0.05-1.2 s pauses, cut at any sample into 2.5-6 s, as a
  window of a long recording is. A phrase is in the label when at least 80 % of its loud
  part is inside the crop, and must not be heard when at most 20 % is; a crop that cuts a
  phrase in between is drawn again.

A random gain (0.5-1.5) is applied to every piece. *Phrases* are the runs of words between
the clips' clear pauses (>= 100 ms below -40 dB), placed by hand below: the fixture's own
word timestamps lag the audio by up to 0.4 s (its "дела" lies inside the pause after it),
so they cannot place a cut between two words.

The result is written in the upstream checkpoint layout (``{"cfg": ..., "state_dict":
...}``, cfg as plain dicts), so that ``speechport convert gigaam`` reads it like any GigaAM
checkpoint.

Usage: PYTHONPATH=src python scripts/train_seams_fixture.py OUT.ckpt [--steps N] [--init CKPT]
(tests/data/gigaam_words/PROVENANCE.md has the exact commands used for the fixture).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speechport.families.gigaam import GigaAMFamily
from speechport.families.omegaconf_compat import omegaconf_globals, to_plain
from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.features.torch_frontend import TorchLogMel

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "gigaam"
SR = 16000
ALPHABET = " абвгдежзийклмнопрстуфхцчшщъыьэюя"
HEARD, UNHEARD = 0.8, 0.2  # share of a phrase inside a crop for it to be heard / not heard
MAX_SCENE = 6.5  # seconds of speech and pauses (a little more than the tests' windows)


# Per clip: (seconds of the middle of each clear pause between phrases, words per phrase).
# clip0 pauses 0.67-0.97 and 2.07-2.59 s; clip1 1.94-2.14 s (the comma before "а"); clip2
# 0.94-1.21 s (the comma after "пожалуйста"); shorter dips are stop closures inside words.
PHRASES = {
    0: ((0.82, 2.33), (1, 4, 3)),
    1: ((2.04,), (4, 5)),
    2: ((1.075,), (1, 7)),
}

Clip = tuple[np.ndarray, list[str], list[int]]  # audio, phrases, cut samples around them


def load_clips() -> list[Clip]:
    index = json.loads((DATA / "index.json").read_text(encoding="utf-8"))
    out = []
    for k, entry in enumerate(index["variants"]["v3_ctc"]["clips"][:3]):
        audio, rate = sf.read(DATA / entry["audio"], dtype="float32")
        assert rate == SR
        words = entry["text"].split()
        pauses, counts = PHRASES[k]
        assert sum(counts) == len(words)
        bounds = [0, *itertools.accumulate(counts)]
        phrases = [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]
        out.append((audio, phrases, [0, *(round(p * SR) for p in pauses), audio.size]))
    return out


def scene(rng: np.random.Generator, clips: list[Clip]) -> tuple[np.ndarray, str]:
    parts: list[np.ndarray] = []
    words: list[str] = []
    length = 0
    for _ in range(int(rng.integers(1, 4))):
        pause = np.zeros(int(rng.uniform(0, 0.8) * SR), np.float32)
        audio, phrases, cuts = clips[int(rng.integers(0, len(clips)))]
        if rng.random() < 0.4:
            first, last = 0, len(phrases)
        else:
            first = int(rng.integers(0, len(phrases)))
            last = int(rng.integers(first + 1, len(phrases) + 1))
        piece = audio[cuts[first] : cuts[last]] * np.float32(rng.uniform(0.5, 1.5))
        if words and length + pause.size + piece.size > MAX_SCENE * SR:
            break
        parts += [pause, piece]
        length += pause.size + piece.size
        words += phrases[first:last]
    parts.append(np.zeros(int(rng.uniform(0, 0.8) * SR), np.float32))
    return np.concatenate(parts), " ".join(words)


def crop(rng: np.random.Generator, clips: list[Clip]) -> tuple[np.ndarray, str]:
    """A window of a long recording: whole clips with 0.05-1.2 s pauses, cut at any sample
    into 2.5-6 s. A phrase counts when at least 80 % of its loud part is inside, and must
    not be heard when at most 20 % is; crops that cut a phrase in between are drawn again."""
    parts: list[np.ndarray] = []
    spans: list[tuple[int, int, str]] = []  # loud part of each phrase, absolute samples
    position = 0
    for _ in range(4):
        pause = int(rng.uniform(0.05, 1.2) * SR)
        audio, phrases, cuts = clips[int(rng.integers(0, len(clips)))]
        position += pause
        for k, phrase in enumerate(phrases):
            loud = np.flatnonzero(np.abs(audio[cuts[k] : cuts[k + 1]]) > 1e-3)
            if loud.size:
                first = position + cuts[k] + int(loud[0])
                spans.append((first, position + cuts[k] + int(loud[-1]) + 1, phrase))
        parts += [np.zeros(pause, np.float32), audio * np.float32(rng.uniform(0.5, 1.5))]
        position += audio.size
    parts.append(np.zeros(int(rng.uniform(0.05, 1.2) * SR), np.float32))
    recording = np.concatenate(parts)
    for _ in range(50):
        length = int(rng.uniform(2.5, 6.0) * SR)
        start = int(rng.integers(0, recording.size - length))
        stop = start + length
        shares = [(max(0, min(b, stop) - max(a, start)) / (b - a), w) for a, b, w in spans]
        if all(share >= HEARD or share <= UNHEARD for share, _ in shares):
            break
    heard = [w for share, w in shares if share >= HEARD]
    return recording[start:stop], " ".join(heard)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--init", type=Path, help="start from this checkpoint (a previous run)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    source = DATA / "v3_ctc.ckpt"
    loaded = GigaAMFamily().load(source)
    model = loaded.model
    if args.init is not None:
        model = GigaAMFamily().load(args.init).model
    frontend = TorchLogMel(loaded.config.frontend)
    clips = load_clips()
    blank = len(ALPHABET)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1
    )
    ctc = torch.nn.CTCLoss(blank=blank, zero_infinity=True)
    model.train()
    began = time.time()
    for step in range(args.steps):
        batch = [(crop if k % 4 else scene)(rng, clips) for k in range(args.batch)]
        lengths = torch.tensor([a.size for a, _ in batch])
        audio = torch.zeros(args.batch, int(lengths.max()))
        for i, (a, _) in enumerate(batch):
            audio[i, : a.size] = torch.from_numpy(a)
        with torch.no_grad():
            features, feature_length = frontend(audio, lengths)
        encoded, encoded_len = model.encoder(features, feature_length.to(torch.int32))
        log_probs = model.head(encoded)
        targets = [torch.tensor([ALPHABET.index(ch) for ch in text]) for _, text in batch]
        loss = ctc(
            log_probs.transpose(0, 1),
            torch.cat(targets),
            encoded_len.to(torch.int64),
            torch.tensor([t.numel() for t in targets]),
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - began:.0f} s)", flush=True)
        if step % 100 == 99 or step == args.steps - 1:
            save(model, source, args.out)
    print(f"wrote {args.out}")


def save(model: torch.nn.Module, source: Path, out: Path) -> None:
    """The upstream layout: the source's cfg (as plain dicts) and state dict, with the
    trained weights in place of the model's."""
    raw = load_torch_checkpoint(source, extra_globals=omegaconf_globals())
    state = {k: torch.from_numpy(np.array(v)) for k, v in raw["state_dict"].items()}
    for name, value in model.state_dict().items():
        state[name] = value.detach().clone()
    torch.save({"cfg": to_plain(raw["cfg"]), "state_dict": state}, out)


if __name__ == "__main__":
    main()
