"""The text front end of text-to-speech: normalisation, grapheme-to-phoneme conversion
through espeak-ng, Kokoro's phoneme alphabet, and the splitting of long phoneme strings
into chunks a fixed-size model can speak. numpy-free and torch-free."""

from speechport.text.espeak import Espeak, EspeakInfo, find_espeak
from speechport.text.normalize import normalize_text
from speechport.text.phonemes import encode_phonemes, espeak_to_kokoro, phonemize
from speechport.text.split import Piece, split_phonemes

__all__ = [
    "Espeak",
    "EspeakInfo",
    "Piece",
    "encode_phonemes",
    "espeak_to_kokoro",
    "find_espeak",
    "normalize_text",
    "phonemize",
    "split_phonemes",
]
