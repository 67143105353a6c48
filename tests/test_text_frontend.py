"""The text front end: normalisation, espeak-ng G2P mapped to Kokoro's alphabet (golden
strings), phoneme encoding errors, and the splitting of long phoneme strings."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from speechport.text.espeak import Espeak, G2PError, find_espeak
from speechport.text.normalize import normalize_text
from speechport.text.phonemes import PhonemeError, encode_phonemes, espeak_to_kokoro, phonemize
from speechport.text.split import CUT, END, PHRASE, SENTENCE, WORD, Piece, split_phonemes

# Kokoro phonemes of espeak-ng 1.51 (Debian 1.51+dfsg-12), voice en-us.
ESPEAK_VERSION = "1.51"
GOLDEN = {
    "Hello, world!": "həlˈO, wˈɜɹld!",
    "The quick brown fox jumps over the lazy dog.": (
        "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ."
    ),
    "I have 23 apples; don't you?": "I hæv twˈɛnti θɹˈi ˈæpᵊlz; dˈOnt ju?",
    "Dr. Smith moved to St. Louis in 1999.": (
        "dˈɑktəɹ smˈɪθ mˈuvd tə sˈAnt lˈui ɪn nˈIntinhˈʌndɹɪd nˈInti nˈIn."
    ),
    "She paid $5.50 for coffee — twice!": "ʃi pˈAd fˈIv dˈɑləɹz fˈɪfti sˈɛnts fɔɹ kˈɔfi — twˈIs!",
    "Kokoro is an open-weight text-to-speech model.": (
        "kəkˈɔɹO ɪz ən ˈOpənwˈAt tˈɛksttəspˈiʧ mˈɑdᵊl."
    ),
    "Wait... what did you say?": "wˈAt… wˌʌt dˈɪd ju sˈA?",
    "“Quoted speech,” he said, “ends here.”": "“kwˈOTᵻd spˈiʧ,” hi sˈɛd, “ˈɛndz hˈɪɹ.”",
    "It costs 3.14 dollars, or 1,000 cents (roughly).": (
        "ɪt kˈɔsts θɹˈi pYnt wˈʌn fˈɔɹ dˈɑləɹz, ɔɹ wˈʌn θˈWzənd sˈɛnts (ɹˈʌfli)."
    ),
    "Meet me at 3:30 in the U.S.A., okay?": "mˈit mˌi æt θɹˈi θˈɜɹTi ɪnðə jˌuˌɛsˈA, OkˈA?",
    "My #1 fan: you.": "mI nˈʌmbəɹ wˈʌn fˈæn: jˈu.",
    "Thirty-two thousand people arrived on the 21st of May.": (
        "θˈɜɹTitˈu θˈWzənd pˈipᵊl əɹɹˈIvd ɔnðə twˈɛnti fˈɜɹst ʌv mˈA."
    ),
}

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)


@pytest.fixture(scope="module")
def espeak() -> Espeak:
    return Espeak("en-us")


@needs_espeak
@pytest.mark.parametrize("text", list(GOLDEN))
def test_golden_phonemes(espeak: Espeak, text: str) -> None:
    version = espeak.info.version
    assert phonemize(text, espeak) == GOLDEN[text], (
        f"espeak-ng {version} (golden: {ESPEAK_VERSION})"
    )


@needs_espeak
def test_espeak_version_is_read() -> None:
    assert find_espeak().version.count(".") >= 1


def test_missing_espeak_says_how_to_install() -> None:
    with pytest.raises(G2PError, match=r"not installed.*apt-get install espeak-ng"):
        find_espeak("espeak-ng-that-does-not-exist")


def test_mapping_follows_upstream_table() -> None:
    # ties, American rewrites, syllabic consonants, flap and glottal stop, length marks
    assert espeak_to_kokoro("həlˈo^ʊ") == "həlˈO"
    assert espeak_to_kokoro("a^ɪ a^ʊ e^ɪ ɔ^ɪ d^ʒ t^ʃ") == "I W A Y ʤ ʧ"
    assert espeak_to_kokoro("wˈɜːld fˈɜːɹst") == "wˈɜɹld fˈɜɹst"
    assert espeak_to_kokoro("mˈɪstɚ ˈɪɾ bˈʌʔn̩") == "mˈɪstəɹ ˈɪT bˈʌtn"
    assert espeak_to_kokoro("bˈʌʔn") == "bˈʌtn"
    assert espeak_to_kokoro("lˈɪʔl̩") == "lˈɪtᵊl"
    assert espeak_to_kokoro("ˈæpə^lz") == "ˈæpᵊlz"
    assert espeak_to_kokoro("kˈɑː^ɹ ɐbˈaʊt") == "kˈɑɹ əbˈaʊt"
    assert espeak_to_kokoro("ˈɪə") == "ˈiə"


def test_normalisation() -> None:
    assert normalize_text("It’s  a\ttest -- really...") == "It's a test — really…"
    assert normalize_text("Mr. Jones paid $1 and €2.05, e.g. today.") == (
        "Mister Jones paid 1 dollar and 2 euros 5 cents, for example today."
    )
    assert normalize_text("St. Louis is on Main St.") == "Saint Louis is on Main Street"
    assert normalize_text("3.14 and 1,000") == "3.14 and 1,000"
    assert normalize_text("I.B.M. and the u.s. at #1") == "IBM and the US at number 1"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(espeak: Espeak, text: str) -> None:
    with pytest.raises(PhonemeError, match="empty"):
        phonemize(text, espeak)


@pytest.mark.parametrize("text", ["...", "?! —", "🙂🙂", "(( ))"])
def test_nothing_speakable(espeak: Espeak, text: str) -> None:
    with pytest.raises(PhonemeError, match="no speakable characters"):
        phonemize(text, espeak)


def test_unknown_phoneme_is_named() -> None:
    vocab = {c: i + 1 for i, c in enumerate("abcˈ ")}
    assert encode_phonemes("ab cˈa", vocab) == [1, 2, 5, 3, 4, 1]
    with pytest.raises(PhonemeError, match=r"unknown phonemes 'x' \(U\+0078\), 'ʘ' \(U\+0298\)"):
        encode_phonemes("abxʘ", vocab)
    with pytest.raises(PhonemeError, match="empty"):
        encode_phonemes(" ", vocab)


def _fits(limit: int) -> Callable[[str], bool]:
    return lambda s: len(s) <= limit


def test_split_keeps_sentences_whole_when_they_fit() -> None:
    ps = "həlˈO, wˈɜɹld! I hæv twˈɛnti θɹˈi ˈæpᵊlz; dˈOnt ju?"
    assert split_phonemes(ps, _fits(510)) == [
        Piece("həlˈO, wˈɜɹld!", SENTENCE),
        Piece("I hæv twˈɛnti θɹˈi ˈæpᵊlz; dˈOnt ju?", END),
    ]


def test_split_goes_to_phrases_then_words_then_inside_words() -> None:
    ps = "aa bb, cc dd; ee ff gg hh. abcdefghij"
    pieces = split_phonemes(ps, _fits(8))
    assert pieces == [
        Piece("aa bb,", PHRASE),
        Piece("cc dd;", PHRASE),
        Piece("ee ff gg", WORD),
        Piece("hh.", SENTENCE),
        Piece("abcdefgh", CUT),
        Piece("ij", END),
    ]
    # nothing dropped, order kept
    assert "".join(p.phonemes for p in pieces).replace(" ", "") == ps.replace(" ", "")


def test_split_packs_phrases_that_fit_together() -> None:
    ps = "a, b, c, d, eeeeeeeeeeeeeeeee."
    assert split_phonemes(ps, _fits(11)) == [
        Piece("a, b, c, d,", PHRASE),
        Piece("eeeeeeeeeee", CUT),
        Piece("eeeeee.", END),
    ]


def test_split_of_nothing() -> None:
    assert split_phonemes("   ", _fits(5)) == []
