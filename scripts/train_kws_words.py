"""Train a tiny streaming Zipformer2 keyword spotter (icefall's KWS architecture, the
``zipformer-kws`` family) that hears the English words of ``scripts/kws_words.py``.

Speech is synthesised on the fly by libespeak-ng (``scripts/espeak_words.Espeak``) with
the training voices only (6 accents x 8 variants, 130-210 words per minute, pitch 30-70),
at a random gain (0.3-1.2) with 0.05-0.5 s of silence before and after, half of it with
faint white noise (-70 to -45 dBFS). Each batch is padded with zeros to its longest
sentence plus the bundle's 0.66 s tail, turned into Kaldi fbank by speechport's own front
end, and run through speechport's torch model exactly as it streams: chunk after chunk of
45 frames (hop 32), every cache carried, so training sees what inference sees. The loss
is the RNN-T negative log-likelihood of the sentence's SentencePiece ids
(``scripts/transducer_loss.rnnt_loss``) over the joiner's logits for every
(frame, label) pair (the decoder's context of label ``u`` is the two tokens before it,
``-1, blank`` at the start, as the keyword search feeds it) plus 0.5 x a CTC loss of a
linear head on the encoder output that exists only during training (it is not saved),
per label token.

The tokenizer is a SentencePiece unigram model trained here on the words
(``kws_words.bpe_corpus``) with icefall's settings (``<blk>`` 0, ``<sos/eos>`` 1,
``<unk>`` 2, no bos/eos) and identity normalisation (the text is upper-case ASCII).

Output, in icefall's layout as the family reads it: ``OUT/pretrained.pt``
(``{"model": state_dict}``), ``OUT/model_config.json`` (train.py argument names) and
``OUT/bpe.model``; the checkpoint is rewritten every ``--save-every`` steps and at the end
(atomically). Training stops after ``--steps`` or ``--minutes``, whichever comes first;
the learning rate warms up over the first ``--warmup`` of the budget (8 %) and then follows
a cosine to zero over the rest. ``--resume PATH`` continues from an earlier
``pretrained.pt`` (reusing the ``bpe.model`` beside it) with a fresh optimizer, warm-up and
cosine over the new budget, and a fresh CTC head that trains alone during the warm-up.

Usage: PYTHONPATH=src nice -n 10 python scripts/train_kws_words.py OUT [--minutes 28]
(tests/data/kws_trained/PROVENANCE.md has the exact command of the shipped model).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.espeak_words import SR, Espeak
from scripts.kws_words import bpe_corpus, training_sentence, training_voice
from scripts.transducer_loss import rnnt_loss

from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.families.zipformer_kws import config_from_dict
from speechport.families.zipformer_kws.bundle import TAIL_PADDING_SECONDS
from speechport.families.zipformer_kws.model import ZipformerTransducer, count_parameters
from speechport.features.kaldi_fbank import KaldiFbankSpec, compute_fbank
from speechport.fsutil import atomic_write_bytes, atomic_write_text

# icefall train.py arguments of the tiny model (every stack one layer, the recipe's
# topology: downsampling 1,2,4,8,4,2, heads 4,4,4,8,4,4, kernels 31,31,15,15,15,31)
MODEL_CONFIG = {
    "feature_dim": 80,
    "subsampling_factor": 4,
    "num_encoder_layers": "1,1,1,1,1,1",
    "downsampling_factor": "1,2,4,8,4,2",
    "feedforward_dim": "80,80,80,80,80,80",
    "num_heads": "4,4,4,8,4,4",
    "encoder_dim": "40,40,40,40,40,40",
    "encoder_unmasked_dim": "40,40,40,40,40,40",
    "query_head_dim": "8",
    "value_head_dim": "6",
    "pos_head_dim": "4",
    "pos_dim": 16,
    "cnn_module_kernel": "31,31,15,15,15,31",
    "decoder_dim": 64,
    "joiner_dim": 64,
    "causal": True,
    "chunk_size": "16",
    "left_context_frames": "64",
    "use_transducer": True,
    "use_ctc": False,
    "blank_id": 0,
    "context_size": 2,
    "layer1_channels": 8,
    "layer2_channels": 16,
    "layer3_channels": 32,
    "output_downsampling_factor": 2,
}
VOCAB_SIZE = 256
CHUNK_FRAMES, CHUNK_SHIFT = 45, 32
CTC_WEIGHT = 0.5


def train_tokenizer(out: Path) -> Path:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(bpe_corpus()),
        model_writer=model,
        vocab_size=VOCAB_SIZE,
        model_type="bpe",
        character_coverage=1.0,
        user_defined_symbols=["<blk>", "<sos/eos>"],
        unk_id=2,
        bos_id=-1,
        eos_id=-1,
        normalization_rule_name="identity",
        num_threads=1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path = out / "bpe.model"
    atomic_write_bytes(path, model.getvalue())
    return path


class Sentences:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.espeak = Espeak()

    def example(self) -> tuple[np.ndarray, list[str]]:
        rng = self.rng
        while True:
            words = training_sentence(rng)
            try:
                spoken = self.espeak.say(words, *training_voice(rng))
            except RuntimeError:  # espeak-ng's word events did not fit: draw again
                continue
            gain = np.float32(rng.uniform(0.3, 1.2))
            before, after = (np.zeros(int(rng.uniform(0.05, 0.5) * SR), np.float32) for _ in "ab")
            audio = np.concatenate([before, spoken.audio * gain, after])
            if rng.random() < 0.5:
                level = 10 ** (rng.uniform(-70, -45) / 20)
                audio = audio + rng.normal(0, level, audio.size).astype(np.float32)
            return audio, words


def batch_features(audio: list[np.ndarray], spec: KaldiFbankSpec) -> torch.Tensor:
    """``[B, chunks, 45, 80]``: each clip padded with zeros to the longest plus the tail."""
    length = max(a.size for a in audio) + round(TAIL_PADDING_SECONDS * SR)
    feats = [compute_fbank(spec, np.pad(a, (0, length - a.size))) for a in audio]
    frames = feats[0].shape[0]
    starts = list(range(0, frames - CHUNK_FRAMES, CHUNK_SHIFT))  # as the session chunks
    chunks = np.stack([np.stack([f[s : s + CHUNK_FRAMES] for s in starts]) for f in feats])
    return torch.from_numpy(chunks.astype(np.float32))


def transducer_logits(
    model: ZipformerTransducer, chunks: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The joiner's logits ``[B, T, U + 1, V]`` and the encoder's output ``[B, T, D]``."""
    batch = chunks.shape[0]
    states = model.initial_states(batch)
    outs = []
    for c in range(chunks.shape[1]):
        out, states = model.streaming_step(chunks[:, c], states)
        outs.append(out)
    enc = model.joiner.encoder_proj(torch.cat(outs, dim=1))  # [B, T, J]
    ctx = model.cfg.context_size
    start = torch.tensor([-1] * (ctx - 1) + [model.cfg.blank_id]).expand(batch, ctx)
    seq = torch.cat([start, labels], dim=1)  # [B, U + ctx]
    contexts = seq.unfold(1, ctx, 1)  # [B, U + 1, ctx]
    u1 = contexts.shape[1]
    dec = model.decoder(contexts.reshape(-1, ctx))[:, -1].reshape(batch, u1, -1)
    dec = model.joiner.decoder_proj(dec)
    logits = model.joiner.output_linear(torch.tanh(enc[:, :, None] + dec[:, None]))
    return logits, torch.cat(outs, dim=1)


def save(model: ZipformerTransducer, out: Path, step: int) -> None:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    atomic_write_bytes(out / "pretrained.pt", buffer.getvalue())
    atomic_write_text(out / "training_step.txt", f"{step}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=100000)
    parser.add_argument("--minutes", type=float, default=28.0)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=0.08, help="share of the budget")
    parser.add_argument(
        "--resume",
        type=Path,
        help="a pretrained.pt of this script to continue from (its bpe.model beside it is "
        "reused; the optimizer and the CTC head start afresh)",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    import sentencepiece as spm

    if args.resume is not None:
        bpe = args.out / "bpe.model"
        atomic_write_bytes(bpe, (args.resume.parent / "bpe.model").read_bytes())
    else:
        bpe = train_tokenizer(args.out)
    sp = spm.SentencePieceProcessor(model_file=str(bpe))
    config = {**MODEL_CONFIG, "vocab_size": sp.get_piece_size()}
    atomic_write_text(args.out / "model_config.json", json.dumps(config, indent=1) + "\n")
    model = ZipformerTransducer(config_from_dict(config))
    if args.resume is not None:
        state = load_torch_checkpoint(args.resume)["model"]
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        print(f"resumed from {args.resume}", flush=True)
    print(f"{count_parameters(model):,} parameters, {sp.get_piece_size()} tokens", flush=True)
    spec = KaldiFbankSpec()
    data = Sentences(rng)
    # a CTC head on the encoder, for training only (not saved): it teaches the encoder
    # to tell the words apart sooner than the transducer loss alone
    ctc_head = torch.nn.Linear(model.cfg.output_dim, model.cfg.vocab_size)
    parameters = [*model.parameters(), *ctc_head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-4)
    model.train()
    began = time.time()
    budget = args.minutes * 60
    average = None
    for step in range(args.steps):
        done = (time.time() - began) / budget
        if done >= 1.0:
            break
        warm = args.warmup
        scale = (
            done / warm
            if done < warm
            else 0.5 * (1 + math.cos(math.pi * (done - warm) / (1 - warm)))
        )
        for group in optimizer.param_groups:
            group["lr"] = args.lr * max(scale, 0.02)
        batch = [data.example() for _ in range(args.batch)]
        chunks = batch_features([a for a, _ in batch], spec)
        targets = [sp.encode(" ".join(words)) for _, words in batch]
        label_lengths = torch.tensor([len(t) for t in targets])
        labels = torch.zeros(len(batch), int(label_lengths.max()), dtype=torch.int64)
        for i, t in enumerate(targets):
            labels[i, : len(t)] = torch.tensor(t)
        logits, encoded = transducer_logits(model, chunks, labels)
        frames = torch.full((len(batch),), encoded.shape[1])
        nll = rnnt_loss(logits, labels, frames, label_lengths, 0)
        # a resumed run's fresh CTC head learns from a still encoder during the warm-up,
        # so its first, random gradients do not undo the encoder
        heard = encoded.detach() if args.resume is not None and done < warm else encoded
        ctc = torch.nn.functional.ctc_loss(
            ctc_head(heard).log_softmax(-1).transpose(0, 1),
            labels,
            frames,
            label_lengths,
            blank=0,
            reduction="sum",
            zero_infinity=True,
        )
        loss = (nll.sum() + CTC_WEIGHT * ctc) / label_lengths.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 5.0)
        optimizer.step()
        value = float(loss.detach())
        average = value if average is None else 0.95 * average + 0.05 * value
        if step % 10 == 0:
            print(
                f"step {step} loss {value:.3f} (avg {average:.3f}, rnnt "
                f"{float(nll.detach().sum() / label_lengths.sum()):.3f}) lr {args.lr * scale:.2e} "
                f"({time.time() - began:.0f} s)",
                flush=True,
            )
        if step % args.save_every == args.save_every - 1:
            save(model, args.out, step + 1)
    save(model, args.out, step)
    print(f"wrote {args.out} after {step} steps ({time.time() - began:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
