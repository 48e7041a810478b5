"""Small sample corpora in each dataset's exact on-disk layout: the demo's and the tests' data.

A tool written for the real LJ Speech 1.1, VCTK 0.92 or NSynth reads these folders unchanged.
Everything is seeded: the same arguments give byte-identical files on the same machine.

The audio is synthesised, not recorded, but shaped like its kind:

* speech: a glottal-pulse source with a smooth pitch contour (declination, accents, drift,
  jitter) through a cascade of time-varying formant resonators whose targets come from the
  words' letters (vowels, diphthongs, nasals and liquids), with fricative noise, stop bursts,
  aspiration, pauses at commas and 0.1-0.3 s of near-silence at both ends;
* notes: additive synthesis at the MIDI pitch's frequency with per-family partials (bright
  brass, near-sine flute, sawtooth-like strings, inharmonic mallets, percussive keyboards),
  loudness and brightness by velocity, held 3 s then released over NSynth's last second.

Audio is written with soundfile only, as 16-bit PCM (WAV) or 16-bit FLAC.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import multiprocessing
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

from wavefoundry.config import DATASETS, SPLITS, SampleDataConfig
from wavefoundry.errors import UserError

LJSPEECH_DIR = "LJSpeech-1.1"
LJSPEECH_SAMPLE_RATE = 22050
VCTK_DIR = "VCTK-Corpus-0.92"
VCTK_SAMPLE_RATE = 48000
NSYNTH_DIR = "nsynth"
NSYNTH_SAMPLE_RATE = 16000
NSYNTH_FRAMES = 64000  # 4 s: note held 3 s, then 1 s of release

# Archive members get this mtime (2019-11-13 00:00 UTC, VCTK 0.92's release month).
_ARCHIVE_MTIME = 1573603200
_ZIP_DATE = (2019, 11, 13, 0, 0, 0)

# Streams of the seeded generator, so that corpora never share random numbers.
_LJ, _VCTK, _NSYNTH = 1, 2, 3


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % 2**63, *keys]))


def _fresh_dir(path: Path) -> Path:
    """Remove `path` if it exists and create it empty: a regenerated corpus keeps no stale files."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@dataclass(frozen=True)
class _Vocabulary:
    nouns: tuple[str, ...]
    names: tuple[str, ...]  # people and places, capitalised
    adjectives: tuple[str, ...]
    passive: tuple[str, ...]  # past participles: "was examined"
    intransitive: tuple[str, ...]  # "remained"


_DETERMINERS = ("the",) * 7 + ("a", "a", "this", "that", "every", "his", "their", "no")
_AUXILIARIES = ("was", "was", "were", "had been", "would be")
_PREPOSITIONS = _words("of of of in in to from by with at upon into under through after before")
_JOINERS = ("and", "and", "and", "but", "which", "while", "when")
_FUNCTION_SET = frozenset(
    [*_DETERMINERS, *_PREPOSITIONS, *_JOINERS, *_words("was were had been would be mister")]
)

_LJ_VOCABULARY = _Vocabulary(
    nouns=_words(
        "printing press paper pages ink workmen city prison prisoners keeper jail chapel court "
        "sheriff magistrates justice debtors felons sentence trial evidence witness report "
        "commission president agents motorcade street window building rifle shots crowd police "
        "officer detective station morning evening night house family friends money debt wages "
        "church market bridge river committee members office records papers answer question "
        "reason purpose matter manner number corridor yard cells wards gate doors walls floor "
        "stairs roof place time work hand side case fact state system practice custom rules "
        "order changes conditions letters books type century"
    ),
    names=_words("Newgate London England America Texas Dallas Washington Oswald Ruby"),
    adjectives=_words(
        "great small large early late long short certain several public private common proper "
        "whole general special careful quiet strong heavy simple plain ancient modern old new"
    ),
    passive=_words(
        "found made given taken brought kept held received described ordered placed examined "
        "observed reported carried followed considered provided required written shown known "
        "seen heard told asked called opened closed"
    ),
    intransitive=_words(
        "remained appeared returned waited continued walked arrived stood lived began"
    ),
)
_TITLED = ("Johnson", "Fry", "Howard", "Smith", "Baker", "Brown", "Connally", "Wilson")

_ONES = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TENS = _words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")


def _number_words(n: int) -> str:
    """0-9999 the way LJ Speech's normalized column reads them."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {_number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{_ONES[thousands]} thousand" + (f" {_number_words(rest)}" if rest else "")


def _year_words(year: int) -> str:
    """1862 -> eighteen sixty-two, 1805 -> eighteen oh five, 1900 -> nineteen hundred."""
    high, low = divmod(year, 100)
    if low == 0:
        return f"{_number_words(high)} hundred"
    if low < 10:
        return f"{_number_words(high)} oh {_ONES[low]}"
    return f"{_number_words(high)} {_number_words(low)}"


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


class _Sentence:
    """A sentence built phrase by phrase, as written and as spoken (LJ's two columns)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.spoken: list[str] = []

    def add(self, written: str, spoken: str | None = None) -> None:
        self.written.extend(written.split())
        self.spoken.extend((written if spoken is None else spoken).split())

    def comma(self) -> None:
        self.written[-1] += ","
        self.spoken[-1] += ","

    @staticmethod
    def _join(tokens: list[str]) -> str:
        text = " ".join(tokens) + "."
        return text[0].upper() + text[1:]

    @property
    def text(self) -> str:
        return self._join(self.written)

    @property
    def normalized(self) -> str:
        return self._join(self.spoken)

    def words(self) -> tuple[list[str], set[int]]:
        """The spoken words one by one (numbers' hyphens split) and the indices followed by a pause."""
        words: list[str] = []
        pauses: set[int] = set()
        for token in self.spoken:
            words.extend(part.strip(",.;") for part in token.replace("-", " ").split())
            if token.endswith(","):
                pauses.add(len(words) - 1)
        return words, pauses


def _noun_phrase(
    rng: np.random.Generator, sentence: _Sentence, vocab: _Vocabulary, special: bool
) -> None:
    if special:
        if rng.random() < 0.5:
            name = _pick(rng, _TITLED)
            sentence.add(f"Mr. {name}", f"Mister {name}")
        else:
            count = int(rng.integers(2, 200))
            noun = _pick(rng, ("men", "days", "cells", "pounds", "feet", "years", "letters"))
            sentence.add(f"{count} {noun}", f"{_number_words(count)} {noun}")
        return
    if rng.random() < 0.1:
        sentence.add(_pick(rng, vocab.names))
        return
    words = [_pick(rng, _DETERMINERS)]
    if rng.random() < 0.35:
        words.append(_pick(rng, vocab.adjectives))
    words.append(_pick(rng, vocab.nouns))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    sentence.add(" ".join(words))


def _verb_phrase(rng: np.random.Generator, sentence: _Sentence, vocab: _Vocabulary) -> None:
    if rng.random() < 0.7:
        sentence.add(f"{_pick(rng, _AUXILIARIES)} {_pick(rng, vocab.passive)}")
    else:
        sentence.add(_pick(rng, vocab.intransitive))


def _make_sentence(
    rng: np.random.Generator, vocab: _Vocabulary, seconds: float, special: bool
) -> _Sentence:
    """Clauses and prepositional phrases until the words would take about `seconds` to say.

    With `special`, one number or title goes in ("in 1862", "14 men", "Mr. Fry"), so that the
    written and normalized columns differ as in LJ Speech.
    """
    sentence = _Sentence()
    estimate = 0.0
    counted = 0

    def spoken_seconds() -> float:
        nonlocal estimate, counted
        words, _ = sentence.words()
        for word in words[counted:]:
            segs = _word_segs(word, rng, word.lower() in _FUNCTION_SET)
            estimate += sum(s.dur for s in segs) + 0.012
        counted = len(words)
        return estimate

    special_left = 1 if special else 0
    relative = False
    while True:
        if not relative:
            use = special_left > 0 and rng.random() < 0.3
            _noun_phrase(rng, sentence, vocab, use)
            special_left -= use
        _verb_phrase(rng, sentence, vocab)
        while spoken_seconds() < seconds and rng.random() < 0.7:
            if special_left > 0 and rng.random() < 0.4:
                year = int(rng.integers(1450, 1965))
                sentence.add(f"in {year}", f"in {_year_words(year)}")
                special_left -= 1
                continue
            sentence.add(_pick(rng, _PREPOSITIONS))
            _noun_phrase(rng, sentence, vocab, False)
        if spoken_seconds() >= seconds:
            return sentence
        sentence.comma()
        estimate += 0.25  # the pause at the comma
        joiner = _pick(rng, _JOINERS)
        sentence.add(joiner)
        relative = joiner == "which"


# --------------------------------------------------------------------------------------------
# Speech: letters -> segments -> control tracks -> glottal source -> formant cascade
# --------------------------------------------------------------------------------------------

_VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "iy": (270, 2290, 3010),
    "ih": (390, 1990, 2550),
    "eh": (530, 1840, 2480),
    "ae": (660, 1720, 2410),
    "aa": (730, 1090, 2440),
    "ao": (570, 840, 2410),
    "uh": (440, 1020, 2240),
    "uw": (300, 870, 2240),
    "ah": (640, 1190, 2390),
}
_DIPHTHONGS = {
    "ey": ("eh", "iy"),
    "ay": ("aa", "iy"),
    "ow": ("ao", "uw"),
    "aw": ("aa", "uh"),
    "oy": ("ao", "iy"),
}
_SONORANTS: dict[str, tuple[float, float, float]] = {
    "m": (250, 1100, 2300),
    "n": (250, 1700, 2500),
    "l": (360, 1300, 2700),
    "r": (420, 1300, 1600),
    "w": (300, 700, 2200),
    "y": (280, 2200, 2900),
}
_VOICE_BAR = (200.0, 1100.0, 2400.0)
_VOWEL_SPELLINGS = {
    "ee": "iy", "ea": "iy", "ie": "iy", "ei": "iy", "oo": "uw", "ou": "aw", "ai": "ey",
    "ay": "ey", "oi": "oy", "oy": "oy", "au": "ao", "aw": "ao", "oa": "ow", "ue": "uw",
    "ui": "uw", "eu": "uw", "io": "iy", "ia": "iy", "ey": "ey", "uy": "ay", "ye": "ay",
}  # fmt: skip
_SHORT_VOWELS = {"a": "ae", "e": "eh", "i": "ih", "o": "aa", "u": "ah", "y": "iy"}
_LONG_VOWELS = {"a": "ey", "e": "iy", "i": "ay", "o": "ow", "u": "uw", "y": "ay"}
_DIGRAPHS = {
    "sh": "sh",
    "ch": "sh",
    "th": "f",
    "ph": "f",
    "ck": "k",
    "ng": "n",
    "gh": "g",
    "qu": "k",
}
_FRIC_S, _FRIC_SH, _FRIC_F = 0, 1, 2  # noise colours: sibilant, palatal, broadband


@dataclass(frozen=True)
class _Seg:
    """A stretch of speech with constant sources; formants glide from `f_from` to `f_to`."""

    dur: float
    voice: float = 0.0  # glottal source level
    asp: float = 0.0  # aspiration noise, shaped by the formants
    fric: float = 0.0  # frication noise, added after the formants
    colour: int = _FRIC_S
    f_from: tuple[float, float, float] | None = None
    f_to: tuple[float, float, float] | None = None
    accent: float = 0.0  # pitch accent on a stressed vowel
    vowel: bool = False


@dataclass(frozen=True)
class _Voice:
    f0: float  # base pitch, Hz
    formant_scale: float  # vocal-tract length: women's formants ~15-20 % higher
    open_quotient: float  # fraction of a glottal cycle the folds are open
    breath: float  # aspiration mixed into voicing
    rate: float  # speaking-rate multiplier on durations (1 = average)
    accent_depth: float  # how far pitch accents rise


def _letter_runs(word: str) -> list[tuple[bool, str]]:
    """Runs of vowel / consonant letters; `y` starting a word is a consonant, elsewhere a vowel."""
    runs: list[tuple[bool, str]] = []
    for i, ch in enumerate(word):
        is_vowel = ch in "aeiou" or (ch == "y" and i > 0)
        if runs and runs[-1][0] == is_vowel:
            runs[-1] = (is_vowel, runs[-1][1] + ch)
        else:
            runs.append((is_vowel, ch))
    return runs


def _consonant_units(cluster: str) -> list[str]:
    units: list[str] = []
    i = 0
    while i < len(cluster) and len(units) < 2:
        pair = cluster[i : i + 2]
        if pair in _DIGRAPHS:
            unit = _DIGRAPHS[pair]
            i += 2
        else:
            unit = cluster[i]
            i += 1
        if not units or units[-1] != unit:
            units.append(unit)
    return units


def _consonant_segs(
    unit: str, nxt: tuple[float, float, float] | None, rng: np.random.Generator
) -> list[_Seg]:
    u = rng.uniform
    if unit in ("s", "z", "c", "x"):
        if unit == "x":
            return [
                _Seg(u(0.03, 0.05)),
                _Seg(0.012, fric=0.4, colour=_FRIC_F),
                _Seg(u(0.07, 0.1), fric=0.8),
            ]
        voiced = 0.25 if unit == "z" else 0.0
        return [
            _Seg(
                u(0.07, 0.11),
                fric=1.0,
                colour=_FRIC_S,
                voice=voiced,
                f_from=_VOICE_BAR,
                f_to=_VOICE_BAR,
            )
        ]
    if unit in ("sh", "j"):
        return [_Seg(u(0.07, 0.11), fric=0.9, colour=_FRIC_SH)]
    if unit in ("f", "v"):
        voiced = 0.25 if unit == "v" else 0.0
        return [
            _Seg(
                u(0.06, 0.09),
                fric=0.35,
                colour=_FRIC_F,
                voice=voiced,
                f_from=_VOICE_BAR,
                f_to=_VOICE_BAR,
            )
        ]
    if unit == "h":
        return [_Seg(u(0.04, 0.07), asp=0.5, f_from=nxt, f_to=nxt)]
    if unit in ("p", "t", "k", "q"):
        colour = _FRIC_S if unit == "t" else _FRIC_F
        return [
            _Seg(u(0.04, 0.065)),
            _Seg(u(0.01, 0.016), fric=0.45, colour=colour),
            _Seg(u(0.025, 0.045), asp=0.45, f_from=nxt, f_to=nxt),
        ]
    if unit in ("b", "d", "g"):
        return [
            _Seg(u(0.035, 0.055), voice=0.12, f_from=_VOICE_BAR, f_to=_VOICE_BAR),
            _Seg(u(0.008, 0.012), fric=0.3, colour=_FRIC_F, voice=0.2),
        ]
    if unit in _SONORANTS:
        f = _SONORANTS[unit]
        level = 0.35 if unit in ("m", "n") else 0.55
        return [_Seg(u(0.045, 0.07), voice=level, f_from=f, f_to=f)]
    return []


def _vowel_name(spelling: str, long: bool) -> str:
    if len(spelling) >= 2 and spelling[:2] in _VOWEL_SPELLINGS:
        return _VOWEL_SPELLINGS[spelling[:2]]
    table = _LONG_VOWELS if long else _SHORT_VOWELS
    return table.get(spelling[0], "ah")


def _vowel_targets(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    if name in _DIPHTHONGS:
        first, second = _DIPHTHONGS[name]
        return _VOWEL_FORMANTS[first], _VOWEL_FORMANTS[second]
    return _VOWEL_FORMANTS[name], _VOWEL_FORMANTS[name]


def _word_segs(word: str, rng: np.random.Generator, function_word: bool) -> list[_Seg]:
    """Segments for one spoken word, from its spelling (a rough letter-to-sound mapping)."""
    letters = "".join(ch for ch in word.lower() if "a" <= ch <= "z")
    if not letters:
        return []
    runs = _letter_runs(letters)
    vowel_runs = [i for i, (is_vowel, _) in enumerate(runs) if is_vowel]
    long_vowel_run = -1
    if len(vowel_runs) > 1 and runs[-1] == (True, "e") and len(letters) > 3:
        runs = runs[:-1]  # silent final e lengthens the vowel before it
        vowel_runs = vowel_runs[:-1]
        long_vowel_run = vowel_runs[-1]
    if not vowel_runs:  # "st", "mr": give it a neutral vowel
        runs = [*runs, (True, "u")]
        vowel_runs = [len(runs) - 1]
    segs: list[_Seg] = []
    first_vowel = vowel_runs[0]
    for i, (is_vowel, text) in enumerate(runs):
        if is_vowel:
            name = _vowel_name(text, long=(i == long_vowel_run))
            f_from, f_to = _vowel_targets(name)
            stressed = (i == first_vowel) and not function_word
            if stressed:
                dur, level, accent = rng.uniform(0.11, 0.17), 1.0, rng.uniform(0.06, 0.16)
            elif function_word:
                dur, level, accent = rng.uniform(0.05, 0.08), 0.6, 0.0
            else:
                dur, level, accent = rng.uniform(0.06, 0.1), 0.75, 0.0
            if name in _DIPHTHONGS:
                dur += 0.035
            segs.append(
                _Seg(
                    dur, voice=level, asp=0.03, f_from=f_from, f_to=f_to, accent=accent, vowel=True
                )
            )
        else:
            nxt = None
            if i + 1 < len(runs):
                nxt = _vowel_targets(_vowel_name(runs[i + 1][1], long=(i + 1 == long_vowel_run)))[0]
            units = _consonant_units(text)
            if i == len(runs) - 1:
                units = units[:1]  # a word's final cluster: keep it short
            for unit in units:
                segs.extend(_consonant_segs(unit, nxt, rng))
    return segs


def _plan_words(
    words: Sequence[str], rng: np.random.Generator, pauses_after: set[int]
) -> list[_Seg]:
    segs: list[_Seg] = []
    for index, word in enumerate(words):
        segs.extend(_word_segs(word, rng, function_word=word.lower() in _FUNCTION_SET))
        if index == len(words) - 1:
            break
        if index in pauses_after:
            segs.append(_Seg(rng.uniform(0.18, 0.32)))
        elif rng.random() < 0.3:
            segs.append(_Seg(rng.uniform(0.015, 0.06)))
    return segs


def _scale(segs: list[_Seg], factor: float) -> list[_Seg]:
    return [dataclasses.replace(s, dur=s.dur * factor) for s in segs]


def _glottal_table(open_quotient: float, size: int = 4096) -> np.ndarray:
    """One period of the glottal flow's derivative (Rosenberg pulse), peak-normalised."""
    phase = (np.arange(size) + 0.5) / size
    rise, fall = 0.6 * open_quotient, 0.4 * open_quotient
    flow = np.where(
        phase < rise,
        0.5 * (1 - np.cos(np.pi * phase / rise)),
        np.where(phase < rise + fall, np.cos(np.pi * (phase - rise) / (2 * fall)), 0.0),
    )
    derivative = np.diff(flow, append=flow[0])
    return derivative / np.max(np.abs(derivative))


def _upsample(control: np.ndarray, hop: int) -> np.ndarray:
    """Linear interpolation of a track given at every `hop`-th sample (len(control) - 1 hops)."""
    ramp = np.arange(hop, dtype=np.float64) / hop
    return (control[:-1, None] + np.diff(control)[:, None] * ramp[None, :]).ravel()


def _smooth(track: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return track
    kernel = np.hanning(width + 2)[1:-1]
    kernel /= kernel.sum()
    pad = width // 2
    padded = np.pad(track, pad, mode="edge")
    return np.convolve(padded, kernel, mode="same")[pad : pad + len(track)]


def _resonator_cascade(
    freqs: np.ndarray, bandwidths: np.ndarray, sr: int
) -> tuple[np.ndarray, np.ndarray]:
    """Gain and 6th-order denominator of three unity-DC-gain resonators, one per column.

    freqs: (3, n) Hz. Returns gain (n,) and a (n, 7).
    """
    r = np.exp(-np.pi * bandwidths / sr)[:, None] * np.ones_like(freqs)
    c = -2.0 * r * np.cos(2 * np.pi * freqs / sr)
    d = r * r
    (c1, c2, c3), (d1, d2, d3) = c, d
    # (1 + c1 z + d1 z^2)(1 + c2 z + d2 z^2) = 1 + p1 z + p2 z^2 + p3 z^3 + p4 z^4
    p1, p2, p3, p4 = c1 + c2, d1 + c1 * c2 + d2, c1 * d2 + c2 * d1, d1 * d2
    a = np.stack(
        [
            np.ones_like(c1),
            p1 + c3,
            p2 + p1 * c3 + d3,
            p3 + p2 * c3 + p1 * d3,
            p4 + p3 * c3 + p2 * d3,
            p4 * c3 + p3 * d3,
            p4 * d3,
        ],
        axis=1,
    )
    gain = (1 + c1 + d1) * (1 + c2 + d2) * (1 + c3 + d3)
    return gain, a


def _bandpass(lo: float, hi: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    hi = min(hi, 0.45 * sr)
    b, a = signal.butter(2, [lo, hi], btype="bandpass", fs=sr)
    return b, a


def _render_speech(
    segs: list[_Seg], voice: _Voice, sr: int, rng: np.random.Generator, peak_dbfs: float
) -> np.ndarray:
    """Float waveform for a timeline of segments (the first and last being silences)."""
    hop = sr // 200  # 5 ms control frames
    durs = np.array([s.dur for s in segs])
    bounds = np.concatenate([[0.0], np.cumsum(durs)])
    n = int(round(bounds[-1] * sr))
    n_frames = -(-n // hop)
    t = np.arange(n_frames + 1) * (hop / sr)
    which = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, len(segs) - 1)
    pos = np.clip((t - bounds[which]) / durs[which], 0.0, 1.0)

    def per_seg(values: Sequence[float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)[which]

    is_vowel = per_seg([s.vowel for s in segs]) > 0
    voicing = per_seg([s.voice for s in segs]) * np.where(
        is_vowel, 0.8 + 0.2 * np.sin(np.pi * pos), 1.0
    )
    asp = per_seg([s.asp for s in segs])
    fric = per_seg([s.fric for s in segs])
    colour = per_seg([s.colour for s in segs])

    # Formant tracks: glide within a segment, inherit across unvoiced stretches, coarticulate.
    nan3 = (np.nan, np.nan, np.nan)
    f_from = np.array([s.f_from or nan3 for s in segs], dtype=np.float64)[which]
    f_to = np.array([s.f_to or nan3 for s in segs], dtype=np.float64)[which]
    formants = f_from + (f_to - f_from) * pos[:, None]
    known = ~np.isnan(formants[:, 0])
    if not known.any():
        formants[:] = _VOWEL_FORMANTS["ah"]
        known[:] = True
    last = np.maximum.accumulate(np.where(known, np.arange(len(t)), -1))
    first_known = int(np.argmax(known))
    formants = formants[np.where(last < 0, first_known, last)]
    formants = np.stack([_smooth(formants[:, k], 7) for k in range(3)]) * voice.formant_scale

    # Pitch: declination, accents, slow drift, a final fall, cycle-to-cycle jitter.
    progress = t / t[-1]
    accents = _smooth(per_seg([s.accent for s in segs]) * np.sin(np.pi * pos), 15)
    drift_knots = rng.standard_normal(len(t) // 40 + 2)
    drift = np.interp(
        np.linspace(0, len(drift_knots) - 1, len(t)), np.arange(len(drift_knots)), drift_knots
    )
    f0 = (
        voice.f0
        * (1.08 - 0.16 * progress)
        * (1 + voice.accent_depth * accents)
        * (1 + 0.025 * drift)
        * (1 - 0.08 * np.clip((progress - 0.85) / 0.15, 0, 1))
        * (1 + 0.007 * rng.standard_normal(len(t)))
    )
    shimmer = 1 + 0.05 * rng.standard_normal(len(t))
    voicing = _smooth(voicing, 5) * shimmer
    asp = _smooth(asp + voice.breath * voicing, 3)
    fric_s = _smooth(fric * (colour == _FRIC_S), 3)
    fric_sh = _smooth(fric * (colour == _FRIC_SH), 3)
    fric_f = _smooth(fric * (colour == _FRIC_F), 2)
    # Speech gets a little quieter towards the end of a breath group.
    level = 1.0 - 0.2 * progress

    # Source: glottal pulses (table lookup on the running phase) plus aspiration noise.
    phase = np.cumsum(_upsample(f0, hop)[:n] / sr)
    phase -= np.floor(phase)
    table = _glottal_table(voice.open_quotient)
    noise = rng.standard_normal(n)
    source = table[(phase * len(table)).astype(np.intp)] * _upsample(voicing * level, hop)[:n]
    source += 0.35 * noise * _upsample(asp * level, hop)[:n]

    # Vocal tract: three moving formants in 10 ms blocks, then fixed F4/F5.
    block = 2 * hop
    n_blocks = -(-n // block)
    centre = np.minimum((np.arange(n_blocks) * block + block // 2) // hop, len(t) - 1)
    bandwidths = np.array([80.0, 100.0, 160.0]) * (0.9 + 0.1 * voice.formant_scale)
    gain, a = _resonator_cascade(formants[:, centre], bandwidths, sr)
    # Each block starts from the actual last six outputs (direct form I), so changing the
    # coefficients between blocks moves the resonances without a transient: zi_k is
    # -sum_m a[k+m] y[-m], the transposed-form state those outputs imply under the new filter.
    hankel = np.zeros((n_blocks, 6, 6))
    for k in range(6):
        hankel[:, k, : 6 - k] = a[:, k + 1 :]
    tract = np.zeros(n + 6)
    for j in range(n_blocks):
        s0 = j * block + 6
        state = -(hankel[j] @ tract[s0 - 1 : s0 - 7 : -1]) if s0 > 6 else np.zeros(6)
        tract[s0 : s0 + block] = signal.lfilter(
            gain[j : j + 1], a[j], source[s0 - 6 : s0 - 6 + block], zi=state
        )[0]
    tract = tract[6:]
    high = np.array([3300.0, 3850.0, 4900.0]) * voice.formant_scale
    high = np.minimum(high, 0.42 * sr)
    gain_hi, a_hi = _resonator_cascade(high[:, None], np.array([250.0, 300.0, 1000.0]), sr)
    voiced = signal.lfilter(gain_hi, a_hi[0], tract)

    # Frication after the tract, scaled against the level of the voiced parts.
    loud = voiced[: n - n % hop].reshape(-1, hop)
    frame_rms = np.sqrt(np.mean(loud * loud, axis=1)) if len(loud) else np.zeros(1)
    reference = float(np.percentile(frame_rms, 90)) if frame_rms.size else 1.0
    reference = reference if reference > 0 else 1.0
    b_s, a_s = _bandpass(3800, 8500, sr)
    b_sh, a_sh = _bandpass(1900, 4800, sr)
    frication = signal.lfilter(b_s, a_s, noise) * _upsample(fric_s * 0.8, hop)[:n]
    frication += signal.lfilter(b_sh, a_sh, noise) * _upsample(fric_sh * 0.7, hop)[:n]
    frication += noise * _upsample(fric_f * 0.3, hop)[:n]
    speech = voiced + reference * frication

    b_hp, a_hp = signal.butter(2, 60.0, btype="highpass", fs=sr)
    speech = signal.lfilter(b_hp, a_hp, speech)
    peak = float(np.max(np.abs(speech))) or 1.0
    speech *= 10 ** (peak_dbfs / 20) / peak
    return speech


def _room_noise(n: int, rng: np.random.Generator, level_dbfs: float) -> np.ndarray:
    """A soft, slightly low-heavy noise floor."""
    white = rng.standard_normal(n)
    floor = signal.lfilter([1.0], [1.0, -0.6], white) * 0.8
    return floor * 10 ** (level_dbfs / 20)


def _utterance(
    words: Sequence[str],
    pauses_after: set[int],
    voice: _Voice,
    rng: np.random.Generator,
    *,
    sr: int,
    lead: float,
    tail: float,
    duration: float | None = None,
) -> list[_Seg]:
    """The whole clip's timeline; `duration` (seconds) stretches or squeezes the speech to fit."""
    speech = _plan_words(words, rng, pauses_after)
    total = sum(s.dur for s in speech)
    factor = voice.rate
    if duration is not None:
        factor = (duration - lead - tail) / total
    return [_Seg(lead), *_scale(speech, factor), _Seg(tail)]


# --------------------------------------------------------------------------------------------
# LJ Speech 1.1
# --------------------------------------------------------------------------------------------

_LJ_VOICE = _Voice(
    f0=205.0, formant_scale=1.16, open_quotient=0.62, breath=0.06, rate=1.0, accent_depth=1.0
)


@dataclass(frozen=True)
class _LJClip:
    index: int
    duration: float
    text: str
    normalized: str
    words: tuple[str, ...]
    pauses_after: frozenset[int]
    lead: float
    tail: float


def _lj_clip(seed: int, index: int) -> _LJClip:
    """Text and timing of clip `index`: depends only on (seed, index)."""
    rng = _rng(seed, _LJ, 1, index)
    duration = float(np.clip(rng.normal(6.7, 2.2), 1.3, 9.9))
    lead, tail = rng.uniform(0.1, 0.3, size=2)
    special = rng.random() < 0.25
    # Phrases come whole, so the words overshoot the target a little: aim slightly short.
    sentence = _make_sentence(rng, _LJ_VOCABULARY, 0.9 * (duration - lead - tail), special)
    words, pauses = sentence.words()
    return _LJClip(
        index,
        duration,
        sentence.text,
        sentence.normalized,
        tuple(words),
        frozenset(pauses),
        lead,
        tail,
    )


def _lj_ids(seed: int, count: int) -> list[str]:
    """`LJ{chapter:03d}-{n:04d}`: chapters of varying length, numbered from 0001 each."""
    rng = _rng(seed, _LJ, 0)
    ids: list[str] = []
    chapter = 1
    while len(ids) < count:
        size = int(rng.integers(15, 60))
        ids.extend(f"LJ{chapter:03d}-{n:04d}" for n in range(1, size + 1))
        chapter += 1
    return ids[:count]


def _write_lj_clip(wavs: Path, clip_id: str, clip: _LJClip, seed: int) -> None:
    rng = _rng(seed, _LJ, 2, clip.index)
    sr = LJSPEECH_SAMPLE_RATE
    segs = _utterance(
        clip.words, set(clip.pauses_after), _LJ_VOICE, rng, sr=sr, lead=clip.lead, tail=clip.tail,
        duration=clip.duration,
    )  # fmt: skip
    voice = _Voice(
        f0=_LJ_VOICE.f0 * rng.uniform(0.95, 1.05),
        formant_scale=_LJ_VOICE.formant_scale,
        open_quotient=_LJ_VOICE.open_quotient,
        breath=_LJ_VOICE.breath,
        rate=1.0,
        accent_depth=rng.uniform(0.8, 1.2),
    )
    speech = _render_speech(segs, voice, sr, rng, peak_dbfs=rng.uniform(-3.0, -1.0))
    speech += _room_noise(len(speech), rng, -66.0)
    sf.write(wavs / f"{clip_id}.wav", _to_pcm16(speech), sr, subtype="PCM_16", format="WAV")


def _write_lj_batch(args: tuple[str, list[tuple[str, _LJClip]], int]) -> None:
    wavs, batch, seed = args
    for clip_id, clip in batch:
        _write_lj_clip(Path(wavs), clip_id, clip, seed)


_LJ_README = """\
LJ Speech Dataset (sample)
==========================

A small, synthetic stand-in for the LJ Speech Dataset 1.1, in the same layout:
{clips} short clips of a single (synthetic) speaker, {minutes:.1f} minutes in all.

FILE FORMAT

Metadata is provided in metadata.csv. This file consists of one record per line,
delimited by the pipe character (0x7c). The fields are:

  1. ID: this is the name of the corresponding .wav file
  2. Transcription: words spoken by the reader (UTF-8)
  3. Normalized Transcription: transcription with numbers, ordinals, and
     monetary units expanded into full words (UTF-8).

Each audio file is a single-channel 16-bit PCM WAV with a sample rate of
22050 Hz. Clips vary in length from 1 to 10 seconds.

The audio was generated by wavefoundry (seed {seed}): a glottal-pulse source and
moving formant filters, not a recording of a person. The real corpus is public
domain and lives at https://keithito.com/LJ-Speech-Dataset/
"""


def make_ljspeech(
    out: Path,
    *,
    clips: int = 48,
    seed: int = 0,
    hours: float | None = None,
    workers: int = 1,
) -> Path:
    """Write `out/LJSpeech-1.1/` (metadata.csv, wavs/, README); return that folder.

    `hours`, when given, replaces `clips`: clips are added until their audio reaches that many
    hours (about 20 s of one core per hour of audio). `workers` > 1 renders the audio in that
    many processes (2 workers: about 10 s per hour); the files are byte-identical either way.
    """
    if hours is None and clips < 1:
        raise UserError(f"LJ Speech sample: clips must be at least 1, got {clips}")
    if hours is not None and not hours > 0:
        raise UserError(f"LJ Speech sample: hours must be positive, got {hours}")
    root = _fresh_dir(Path(out) / LJSPEECH_DIR)
    wavs = root / "wavs"
    wavs.mkdir()
    plans: list[_LJClip] = []
    if hours is None:
        plans = [_lj_clip(seed, i) for i in range(clips)]
    else:
        total = 0.0
        while total < hours * 3600:
            plans.append(_lj_clip(seed, len(plans)))
            total += plans[-1].duration
    ids = _lj_ids(seed, len(plans))
    jobs = list(zip(ids, plans, strict=True))
    if workers > 1 and len(jobs) > workers:
        # Each clip depends only on (seed, index), so the files are the same however many
        # processes render them. Fork where there is one: spawned children re-run the caller's
        # main script, which breaks scripts without a __main__ guard and piped-in code.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        chunks = [(str(wavs), jobs[i : i + 8], seed) for i in range(0, len(jobs), 8)]
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for _ in pool.map(_write_lj_batch, chunks):
                pass
    else:
        _write_lj_batch((str(wavs), jobs, seed))
    lines = [f"{clip_id}|{clip.text}|{clip.normalized}\n" for clip_id, clip in jobs]
    (root / "metadata.csv").write_text("".join(lines), encoding="utf-8", newline="\n")
    minutes = sum(clip.duration for clip in plans) / 60
    readme = _LJ_README.format(clips=len(plans), minutes=minutes, seed=seed)
    (root / "README").write_text(readme, encoding="utf-8", newline="\n")
    return root


# --------------------------------------------------------------------------------------------
# VCTK 0.92
# --------------------------------------------------------------------------------------------

# speaker-info.txt of VCTK 0.92: ID, AGE, GENDER, ACCENTS, REGION (COMMENTS).
_VCTK_SPEAKERS: tuple[tuple[str, int, str, str, str], ...] = (
    ("p225", 23, "F", "English", "Southern England"),
    ("p226", 22, "M", "English", "Surrey"),
    ("p227", 38, "M", "English", "Cumbria"),
    ("p228", 22, "F", "English", "Southern England"),
    ("p229", 23, "F", "English", "Southern England"),
    ("p230", 22, "F", "English", "Stockton-on-tees"),
    ("p231", 23, "F", "English", "Southern England"),
    ("p232", 23, "M", "English", "Southern England"),
    ("p233", 23, "F", "English", "Staffordshire"),
    ("p234", 22, "F", "Scottish", "West Dumfries"),
    ("p236", 23, "F", "English", "Manchester"),
    ("p237", 22, "M", "Scottish", "Fife"),
    ("p238", 22, "F", "NorthernIrish", "Belfast"),
    ("p239", 22, "F", "English", "SW England"),
    ("p240", 21, "F", "English", "Southern England"),
    ("p241", 21, "M", "Scottish", "Perth"),
    ("p243", 22, "M", "English", "London"),
    ("p244", 22, "F", "English", "Manchester"),
    ("p245", 25, "M", "Irish", "Dublin"),
    ("p246", 22, "M", "Scottish", "Selkirk"),
    ("p247", 22, "M", "Scottish", "Argyll"),
    ("p248", 23, "F", "Indian", ""),
    ("p249", 22, "F", "Scottish", "Aberdeen"),
    ("p250", 22, "F", "English", "SE England"),
    ("p251", 26, "M", "Indian", ""),
    ("p252", 22, "M", "Scottish", "Edinburgh"),
    ("p253", 22, "F", "Welsh", "Cardiff"),
    ("p254", 21, "M", "English", "Surrey"),
    ("p255", 19, "M", "Scottish", "Galloway"),
    ("p256", 24, "M", "English", "Birmingham"),
    ("p257", 24, "F", "English", "Southern England"),
    ("p258", 22, "M", "English", "Southern England"),
    ("p259", 23, "M", "English", "Nottingham"),
    ("p260", 21, "M", "Scottish", "Orkney"),
    ("p261", 26, "F", "NorthernIrish", "Belfast"),
    ("p262", 23, "F", "Scottish", "Edinburgh"),
    ("p263", 22, "M", "Scottish", "Aberdeen"),
    ("p264", 23, "F", "Scottish", "West Lothian"),
    ("p265", 23, "F", "Scottish", "Ross"),
    ("p266", 22, "F", "Irish", "Athlone"),
    ("p267", 23, "F", "English", "Yorkshire"),
    ("p268", 23, "F", "English", "Southern England"),
    ("p269", 20, "F", "English", "Newcastle"),
    ("p270", 21, "M", "English", "Yorkshire"),
    ("p271", 19, "M", "Scottish", "Fife"),
    ("p272", 23, "M", "Scottish", "Edinburgh"),
    ("p273", 23, "M", "English", "Suffolk"),
    ("p274", 22, "M", "English", "Essex"),
    ("p275", 23, "M", "Scottish", "Midlothian"),
    ("p276", 24, "F", "English", "Oxford"),
    ("p277", 23, "F", "English", "NE England"),
    ("p278", 22, "M", "English", "Cheshire"),
    ("p279", 23, "M", "English", "Leicester"),
    ("p280", 25, "F", "Unknown", "France (mic2 files unavailable)"),
    ("p281", 29, "M", "Scottish", "Edinburgh"),
    ("p282", 23, "F", "English", "Newcastle"),
    ("p283", 24, "F", "Irish", "Cork"),
    ("p284", 20, "M", "Scottish", "Fife"),
    ("p285", 21, "M", "Scottish", "Edinburgh"),
    ("p286", 23, "M", "English", "Newcastle"),
    ("p287", 23, "M", "English", "York"),
    ("p288", 22, "F", "Irish", "Dublin"),
    ("p292", 23, "M", "NorthernIrish", "Belfast"),
    ("p293", 22, "F", "NorthernIrish", "Belfast"),
    ("p294", 33, "F", "American", "San Francisco"),
    ("p295", 23, "F", "Irish", "Dublin"),
    ("p297", 20, "F", "American", "New York"),
    ("p298", 19, "M", "Irish", "Tipperary"),
    ("p299", 25, "F", "American", "California"),
    ("p300", 23, "F", "American", "Ohio"),
    ("p301", 23, "F", "American", "North Carolina"),
    ("p302", 20, "M", "Canadian", "Montreal"),
    ("p303", 24, "F", "Canadian", "Toronto"),
    ("p304", 22, "M", "NorthernIrish", "Belfast"),
    ("p305", 19, "F", "American", "Philadelphia"),
    ("p306", 21, "F", "American", "New York"),
    ("p307", 23, "F", "Canadian", "Ontario"),
    ("p308", 18, "F", "American", "Alabama"),
    ("p310", 21, "F", "American", "Tennessee"),
    ("p311", 21, "M", "American", "Iowa"),
    ("p312", 19, "F", "Canadian", "Hamilton"),
    ("p313", 24, "F", "Irish", "County Down"),
    ("p314", 26, "F", "SouthAfrican", "Cape Town"),
    ("p315", 18, "M", "American", "New England (Text unavailable)"),
    ("p316", 20, "M", "Canadian", "Alberta"),
    ("p317", 23, "F", "Canadian", "Hamilton"),
    ("p318", 32, "F", "American", "Napa"),
    ("p323", 19, "F", "SouthAfrican", "Pretoria"),
    ("p326", 26, "M", "Australian", "English Sydney"),
    ("p329", 23, "F", "American", ""),
    ("p330", 26, "F", "American", ""),
    ("p333", 19, "F", "American", "Indiana"),
    ("p334", 18, "M", "American", "Chicago"),
    ("p335", 25, "F", "NewZealand", "English"),
    ("p336", 18, "F", "SouthAfrican", "Johannesburg"),
    ("p339", 21, "F", "American", "Pennsylvania"),
    ("p340", 18, "F", "Irish", "Dublin"),
    ("p341", 26, "F", "American", "Ohio"),
    ("p343", 27, "F", "Canadian", "Alberta"),
    ("p345", 22, "M", "American", "Florida"),
    ("p347", 26, "M", "SouthAfrican", "Johannesburg"),
    ("p351", 21, "F", "NorthernIrish", "Derry"),
    ("p360", 19, "M", "American", "New Jersey"),
    ("p361", 19, "F", "American", "New Jersey"),
    ("p362", 29, "F", "American", ""),
    ("p363", 22, "M", "Canadian", "Toronto"),
    ("p364", 23, "M", "Irish", "Donegal"),
    ("p374", 28, "M", "Australian", "English"),
    ("p376", 22, "M", "Indian", ""),
)
_VCTK_BY_ID = {row[0]: row for row in _VCTK_SPEAKERS}
# The corpus's documented holes: no transcripts, no second microphone, text without audio.
VCTK_NO_TEXT = "p315"
VCTK_NO_MIC2 = "p280"
VCTK_TEXT_WITHOUT_AUDIO = "p362"
_VCTK_QUIRK_SPEAKERS = (VCTK_NO_MIC2, VCTK_NO_TEXT, VCTK_TEXT_WITHOUT_AUDIO)

# The elicitation paragraph and the rainbow passage, read by every speaker before the
# newspaper sentences.
_VCTK_SHARED_SENTENCES = (
    "Please call Stella.",
    "Ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her Wednesday at the train station.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "These take the shape of a long round arch, with its path high above, and its two ends apparently beyond the horizon.",
)

# The newspaper sentences (Herald Glasgow in the real corpus) come from this vocabulary.
_NEWS_VOCABULARY = _Vocabulary(
    nouns=_words(
        "council minister party election football club season match team players manager "
        "government police hospital school children families business company jobs workers "
        "money plans report figures week year people service decision support future problem "
        "change city country market price game result board industry staff patients"
    ),
    names=("Scotland", "Glasgow", "Edinburgh", "Celtic", "Rangers", "Aberdeen", "Labour"),
    adjectives=_words(
        "new local national first last major important clear strong good public final "
        "recent serious private young senior"
    ),
    passive=_words(
        "announced expected given made taken shown agreed reported closed opened approved "
        "asked offered needed told"
    ),
    intransitive=_words("improved failed remained returned continued started collapsed won lost"),
)


def _vctk_speaker_ids(count: int) -> list[str]:
    if count > len(_VCTK_SPEAKERS):
        raise UserError(
            f"VCTK sample: the corpus has {len(_VCTK_SPEAKERS)} speakers, asked for {count}"
        )
    if count < 4:
        chosen = [row[0] for row in _VCTK_SPEAKERS if row[0] not in _VCTK_QUIRK_SPEAKERS][:count]
    else:
        others = [row[0] for row in _VCTK_SPEAKERS if row[0] not in _VCTK_QUIRK_SPEAKERS]
        chosen = [*_VCTK_QUIRK_SPEAKERS, *others[: count - len(_VCTK_QUIRK_SPEAKERS)]]
    return sorted(chosen)


def _vctk_voice(seed: int, speaker: str) -> _Voice:
    rng = _rng(seed, _VCTK, 0, int(speaker[1:]))
    if _VCTK_BY_ID[speaker][2] == "F":
        f0, scale, oq, breath = (
            rng.uniform(185, 235),
            rng.uniform(1.12, 1.22),
            rng.uniform(0.6, 0.7),
            0.08,
        )
    else:
        f0, scale, oq, breath = (
            rng.uniform(95, 130),
            rng.uniform(0.95, 1.04),
            rng.uniform(0.45, 0.55),
            0.03,
        )
    return _Voice(
        f0=f0, formant_scale=scale, open_quotient=oq, breath=breath,
        rate=rng.uniform(0.9, 1.12), accent_depth=rng.uniform(0.7, 1.3),
    )  # fmt: skip


def _vctk_sentence(rng: np.random.Generator) -> str:
    return _make_sentence(rng, _NEWS_VOCABULARY, rng.uniform(1.0, 3.2), special=False).text


def _mic2(clean: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The second microphone: further away, a darker colouring, a small delay, more room."""
    b, a = signal.butter(1, 5500.0, btype="lowpass", fs=sr)
    coloured = signal.lfilter(b, a, clean)
    b_lo, a_lo = signal.butter(1, 180.0, btype="highpass", fs=sr)
    coloured = 0.7 * coloured + 0.3 * signal.lfilter(b_lo, a_lo, coloured)
    delay = int(0.0006 * sr)
    echo = int(0.0037 * sr)
    wet = np.zeros_like(coloured)
    wet[delay:] = coloured[: len(coloured) - delay]
    wet[echo:] += 0.25 * coloured[: len(coloured) - echo]
    wet *= 10 ** (rng.uniform(-4.5, -2.5) / 20) / (float(np.max(np.abs(wet))) or 1.0)
    return wet + _room_noise(len(wet), rng, -57.0)


_VCTK_README = """\
---------------------------------------------------------------------
                CSTR VCTK Corpus (wavefoundry sample)
      English Multi-speaker Corpus for CSTR Voice Cloning Toolkit

                           (Version 0.92)
---------------------------------------------------------------------

A small synthetic stand-in with the layout of VCTK 0.92: {speakers} speakers, up to
{clips} sentences each, 48 kHz 16-bit FLAC from two microphones (mic1, mic2).

  speaker-info.txt                  ID, AGE, GENDER, ACCENTS, REGION of each speaker
  txt/pXXX/pXXX_NNN.txt             the sentence read
  wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac, pXXX_NNN_mic2.flac

As in the real corpus: p315's transcripts are missing (no txt/p315), p280 has no
mic2 recordings, and some of p362's transcripts have no audio.

The audio was synthesised by wavefoundry (seed {seed}); the speaker IDs, ages,
genders and accents are those of the real speakers. The real corpus is at
https://datashare.ed.ac.uk/handle/10283/3443
"""

_VCTK_LICENSE = """\
The VCTK corpus is distributed under the Creative Commons Attribution 4.0
International Public License (CC BY 4.0):
https://creativecommons.org/licenses/by/4.0/legalcode

This folder holds synthetic audio generated by wavefoundry in the corpus's layout;
the speaker metadata and the shared reading passages follow the original corpus.
"""


def _speaker_info_line(speaker: str) -> str:
    sid, age, gender, accent, region = _VCTK_BY_ID[speaker]
    place, _, comment = region.partition(" (")
    line = f"{sid}  {age}  {gender}    {accent}"
    if place:
        line += "    " + "  ".join(place.split())
    if comment:
        line += "  (" + comment
    return line


def make_vctk(out: Path, *, speakers: int = 6, clips_per_speaker: int = 8, seed: int = 0) -> Path:
    """Write `out/VCTK-Corpus-0.92/`; return that folder.

    With `speakers` >= 4 the set includes p280 (no mic2), p315 (no txt folder) and p362 (one
    transcript whose audio is missing), as in the real corpus.
    """
    if speakers < 1 or clips_per_speaker < 1:
        raise UserError("VCTK sample: speakers and clips_per_speaker must be at least 1")
    ids = _vctk_speaker_ids(speakers)
    root = _fresh_dir(Path(out) / VCTK_DIR)
    sr = VCTK_SAMPLE_RATE
    header = "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
    info = header + "".join(_speaker_info_line(s) + "\n" for s in ids)
    (root / "speaker-info.txt").write_text(info, encoding="utf-8", newline="\n")
    (root / "README.txt").write_text(
        _VCTK_README.format(speakers=len(ids), clips=clips_per_speaker, seed=seed),
        encoding="utf-8",
        newline="\n",
    )
    (root / "license_text").write_text(_VCTK_LICENSE, encoding="utf-8", newline="\n")
    for speaker in ids:
        voice = _vctk_voice(seed, speaker)
        number = int(speaker[1:])
        text_rng = _rng(seed, _VCTK, 1, number)
        audio_dir = root / "wav48_silence_trimmed" / speaker
        audio_dir.mkdir(parents=True)
        text_dir = root / "txt" / speaker
        if speaker != VCTK_NO_TEXT:
            text_dir.mkdir(parents=True)
        for k in range(1, clips_per_speaker + 1):
            utterance = f"{speaker}_{k:03d}"
            if k <= len(_VCTK_SHARED_SENTENCES):
                sentence = _VCTK_SHARED_SENTENCES[k - 1]
            else:
                sentence = _vctk_sentence(text_rng)
            if speaker != VCTK_NO_TEXT:
                (text_dir / f"{utterance}.txt").write_text(
                    sentence + "\n", encoding="utf-8", newline="\n"
                )
            if (
                speaker == VCTK_TEXT_WITHOUT_AUDIO
                and k == clips_per_speaker
                and clips_per_speaker > 1
            ):
                continue  # the transcript stays; its recording is missing
            rng = _rng(seed, _VCTK, 2, number, k)
            raw = sentence.split()
            words = [w.strip(",.") for w in raw]
            pauses = {i for i, w in enumerate(raw) if w.endswith(",")}
            segs = _utterance(
                words,
                pauses,
                voice,
                rng,
                sr=sr,
                lead=rng.uniform(0.08, 0.2),
                tail=rng.uniform(0.08, 0.2),
            )
            clean = _render_speech(segs, voice, sr, rng, peak_dbfs=rng.uniform(-3.0, -1.0))
            mic1 = clean + _room_noise(len(clean), rng, -68.0)
            sf.write(
                audio_dir / f"{utterance}_mic1.flac",
                _to_pcm16(mic1),
                sr,
                subtype="PCM_16",
                format="FLAC",
            )
            if speaker != VCTK_NO_MIC2:
                mic2 = _mic2(clean, sr, rng)
                sf.write(
                    audio_dir / f"{utterance}_mic2.flac",
                    _to_pcm16(mic2),
                    sr,
                    subtype="PCM_16",
                    format="FLAC",
                )
    return root


# --------------------------------------------------------------------------------------------
# NSynth
# --------------------------------------------------------------------------------------------

NSYNTH_FAMILIES = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
    "synth_lead", "vocal",
)  # fmt: skip
NSYNTH_SOURCES = ("acoustic", "electronic", "synthetic")
NSYNTH_QUALITIES = (
    "bright", "dark", "distortion", "fast_decay", "long_release", "multiphonic",
    "nonlinear_env", "percussive", "reverb", "tempo-synced",
)  # fmt: skip
NSYNTH_VELOCITIES = (25, 50, 75, 100, 127)
_NSYNTH_NOTES_TOTAL = 305979  # note ids are unique across the three splits
_NSYNTH_INSTRUMENTS_TOTAL = 1006

# Plausible MIDI range and the sources NSynth has for each family.
_FAMILY_RANGE = {
    "bass": (24, 67), "brass": (40, 84), "flute": (55, 96), "guitar": (40, 88),
    "keyboard": (21, 108), "mallet": (45, 96), "organ": (24, 96), "reed": (45, 84),
    "string": (28, 96), "synth_lead": (36, 96), "vocal": (41, 79),
}  # fmt: skip
_FAMILY_SOURCES = {
    "bass": (1, 2, 0), "brass": (0, 1), "flute": (0, 2), "guitar": (0, 1), "keyboard": (0, 1, 2),
    "mallet": (0, 1), "organ": (1,), "reed": (0,), "string": (0,), "synth_lead": (2, 1),
    "vocal": (0, 2),
}  # fmt: skip


@dataclass(frozen=True)
class _Instrument:
    instrument: int
    family: int
    source: int
    number: int  # NNN of `{family}_{source}_{NNN}`
    split: str
    timbre: int  # seed of the instrument's fixed timbre parameters

    @property
    def name(self) -> str:
        return f"{NSYNTH_FAMILIES[self.family]}_{NSYNTH_SOURCES[self.source]}_{self.number:03d}"


def _nsynth_instruments(counts: dict[str, int], seed: int) -> list[_Instrument]:
    rng = _rng(seed, _NSYNTH, 0)
    total = sum(counts.values())
    if total > _NSYNTH_INSTRUMENTS_TOTAL:
        raise UserError(
            f"NSynth sample: the dataset has {_NSYNTH_INSTRUMENTS_TOTAL} instruments, asked for {total}"
        )
    instrument_ids = rng.choice(_NSYNTH_INSTRUMENTS_TOTAL, size=total, replace=False)
    # Cycle through the families in a shuffled order, so even a few instruments vary.
    order: list[int] = []
    while len(order) < total:
        order.extend(int(f) for f in rng.permutation(len(NSYNTH_FAMILIES)))
    numbers: dict[tuple[int, int], int] = {}
    instruments: list[_Instrument] = []
    for split in SPLITS:
        for _ in range(counts.get(split, 0)):
            k = len(instruments)
            family = order[k]
            sources = _FAMILY_SOURCES[NSYNTH_FAMILIES[family]]
            source = sources[int(rng.integers(len(sources)))]
            number = numbers.get((family, source), int(rng.integers(0, 5)))
            numbers[(family, source)] = number + 1 + int(rng.integers(0, 3))
            instruments.append(
                _Instrument(
                    int(instrument_ids[k]), family, source, number, split, int(rng.integers(2**31))
                )
            )
    return instruments


@dataclass(frozen=True)
class _Timbre:
    partials: tuple[float, ...]  # frequency ratios to the fundamental
    amps: tuple[float, ...]
    decays: tuple[float, ...]  # per-partial time constants while held, s (inf: sustained)
    attack: float  # s
    release: float  # time constant after note-off, s
    vibrato: float  # depth, fraction of frequency
    vibrato_rate: float  # Hz
    tremolo: float  # depth of a slow amplitude wobble
    drive: float  # tanh saturation (0: clean)
    noise: float  # breath / bow / hammer noise level
    percussive_noise: bool  # the noise is a hammer's knock, not a steady breath
    reverb: float  # wet level of a short room
    bright: bool
    dark: bool


def _timbre(inst: _Instrument, pitch: int, velocity: int) -> _Timbre:
    rng = _rng(inst.timbre, _NSYNTH, 2)
    family = NSYNTH_FAMILIES[inst.family]
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    vel = velocity / 127
    k = np.arange(1, 41, dtype=np.float64)
    inf = np.inf
    tilt = rng.uniform(-0.2, 0.2)
    attack, release, vibrato, rate, tremolo, drive, noise = 0.01, 0.15, 0.0, 5.5, 0.0, 0.0, 0.0
    decays: Any = None
    ratios = k.copy()
    if family == "bass":
        amps = 1 / k ** (2.2 + tilt)
        decays = 1.6 / (1 + 0.25 * k)
        attack, release = 0.005, 0.12
    elif family == "brass":
        shape = 1.6 - 0.6 * vel + tilt
        amps = k**1.2 * np.exp(-k / (2.2 + 2.5 * vel)) / shape
        attack, release, vibrato = rng.uniform(0.03, 0.07), 0.12, 0.002
    elif family == "flute":
        amps = np.where(k == 1, 1.0, 0.22 / k**2.0)
        attack, release, vibrato, noise = rng.uniform(0.05, 0.1), 0.1, 0.006, 0.03
    elif family == "guitar":
        pluck = rng.uniform(0.1, 0.22)
        amps = np.abs(np.sin(np.pi * k * pluck)) / k ** (1.1 + tilt) + 0.02 / k
        decays = rng.uniform(1.2, 2.2) / (1 + 0.35 * k)
        attack, release = 0.003, 0.1
    elif family == "keyboard":
        stretch = rng.uniform(0.3, 1.2) * 1e-4
        ratios = k * np.sqrt(1 + stretch * k**2)
        amps = 1 / k ** (1.6 - 0.6 * vel + tilt)
        decays = rng.uniform(1.5, 3.0) * (440 / max(f0, 110)) ** 0.3 / (1 + 0.25 * k)
        attack, release, noise = 0.002, 0.2, 0.02
    elif family == "mallet":
        bar = (1.0, 3.93, 9.54, 17.2) if rng.random() < 0.5 else (1.0, 4.0, 10.0, 16.0)
        ratios = np.array(bar)
        amps = np.array([1.0, 0.35, 0.12, 0.05])
        decays = rng.uniform(0.35, 0.9) / np.array([1.0, 2.5, 5.0, 8.0])
        attack, release = 0.001, 0.08
    elif family == "organ":
        drawbars = rng.uniform(0.0, 1.0, size=8) * np.array([1, 1, 0.8, 0.7, 0.5, 0.5, 0.3, 0.3])
        ratios = np.array([1, 2, 3, 4, 5, 6, 8, 10], dtype=np.float64)
        amps = drawbars
        amps[0] = 1.0
        attack, release = 0.008, 0.05
        tremolo = 0.15 if rng.random() < 0.4 else 0.0
    elif family == "reed":
        clarinet = rng.random() < 0.5
        amps = (
            np.where(k % 2 == 1, 1 / k, 0.04 / k)
            if clarinet
            else k**0.6 * np.exp(-k / (2 + 3 * vel))
        )
        attack, release, vibrato, noise = rng.uniform(0.03, 0.06), 0.1, 0.003, 0.02
    elif family == "string":
        amps = 1 / k ** (1.05 + tilt) * (0.6 + 0.4 * np.abs(np.sin(1.3 * k)))
        attack, release, vibrato, noise = rng.uniform(0.08, 0.16), 0.25, 0.003, 0.01
    elif family == "synth_lead":
        square = rng.random() < 0.4
        amps = np.where(k % 2 == 1, 1 / k, 0.0) if square else 1 / k
        attack, release = 0.005, rng.choice([0.1, 0.4])
        vibrato = 0.0 if rng.random() < 0.5 else 0.004
        drive = 1.8 if inst.source == 1 else 0.0
    else:  # vocal
        vowel = _VOWEL_FORMANTS[_pick(rng, ("aa", "ao", "uw", "ah", "eh"))]
        freqs = k * f0
        env = sum(1 / (1 + ((freqs - fm) / 90) ** 2) for fm in vowel)
        amps = env / k**0.5
        attack, release, vibrato, rate = rng.uniform(0.06, 0.12), 0.18, 0.012, 5.0
    amps = np.asarray(amps, dtype=np.float64)
    decays = np.full(len(amps), inf) if decays is None else np.asarray(decays, dtype=np.float64)
    if inst.source == 2:  # synthetic: simpler, cleaner spectra
        amps = amps * np.exp(-0.02 * np.arange(len(amps)))
    keep = ratios * f0 < 0.45 * NSYNTH_SAMPLE_RATE
    keep[0] = True
    amps, ratios, decays = amps[keep], ratios[keep], decays[keep]
    amps = amps / np.max(amps)
    amps[0] = max(amps[0], 0.35)  # the fundamental stays audible, as on a real instrument
    centroid = float(np.sum(amps * ratios) / np.sum(amps))
    reverb = 0.22 if (inst.source == 0 and rng.random() < 0.4) else 0.0
    return _Timbre(
        partials=tuple(ratios.tolist()),
        amps=tuple(amps.tolist()),
        decays=tuple(decays.tolist()),
        attack=attack,
        release=float(release),
        vibrato=vibrato,
        vibrato_rate=rate,
        tremolo=tremolo,
        drive=drive,
        noise=noise,
        percussive_noise=family == "keyboard",
        reverb=reverb,
        bright=centroid > 4.0,
        dark=centroid < 1.6,
    )


def _qualities(timbre: _Timbre, family: str) -> list[int]:
    percussive = family in ("guitar", "keyboard", "mallet") or (
        family == "bass" and np.isfinite(timbre.decays[0])
    )
    fast_decay = family == "mallet" or (np.isfinite(timbre.decays[0]) and timbre.decays[0] < 0.5)
    flags = {
        "bright": timbre.bright,
        "dark": timbre.dark,
        "distortion": timbre.drive > 0,
        "fast_decay": fast_decay,
        "long_release": timbre.release >= 0.35,
        "multiphonic": False,
        "nonlinear_env": timbre.tremolo > 0,
        "percussive": percussive,
        "reverb": timbre.reverb > 0,
        "tempo-synced": False,
    }
    return [int(flags[name]) for name in NSYNTH_QUALITIES]


def _render_note(
    timbre: _Timbre, pitch: int, velocity: int, rng: np.random.Generator
) -> np.ndarray:
    sr, n = NSYNTH_SAMPLE_RATE, NSYNTH_FRAMES
    t = np.arange(n) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    vib_env = np.clip((t - 0.25) / 0.4, 0, 1)
    freq = f0 * (
        1
        + timbre.vibrato
        * vib_env
        * np.sin(2 * np.pi * timbre.vibrato_rate * t + rng.uniform(0, 6.28))
    )
    base_phase = 2 * np.pi * np.cumsum(freq) / sr
    note = np.zeros(n)
    for ratio, amp, decay in zip(timbre.partials, timbre.amps, timbre.decays, strict=True):
        partial = amp * np.sin(ratio * base_phase + rng.uniform(0, 2 * np.pi))
        if np.isfinite(decay):
            partial *= np.exp(-t / decay)
        note += partial
    if timbre.noise > 0:
        # Breath or bow noise around the partials: a chiff at the onset, then a steady hiss;
        # on a keyboard only the hammer's knock.
        b, a = _bandpass(min(f0, 2000.0), min(6 * f0, 7000.0), sr)
        hiss = signal.lfilter(b, a, rng.standard_normal(n))
        shape = np.exp(-t / 0.05) if timbre.percussive_noise else 0.4 + 0.6 * np.exp(-t / 0.3)
        note += 3 * timbre.noise * hiss * shape
    # Envelope: attack, hold until note-off at 3 s, then release.
    held = 1 - np.exp(-t / max(timbre.attack / 3, 1e-4))
    off = 3.0
    release = np.where(t < off, 1.0, np.exp(-(t - off) / timbre.release))
    env = held * release
    if timbre.tremolo > 0:
        env *= 1 - timbre.tremolo * 0.5 * (1 - np.cos(2 * np.pi * 6.0 * t))
    note *= env
    if timbre.drive > 0:
        note = np.tanh(timbre.drive * note / np.max(np.abs(note))) / np.tanh(timbre.drive)
    if timbre.reverb > 0:
        tail = int(0.35 * sr)
        ir = rng.standard_normal(tail) * np.exp(-np.arange(tail) / (0.08 * sr))
        ir /= np.sqrt(np.sum(ir**2))
        note = note + timbre.reverb * signal.fftconvolve(note, ir)[:n]
    fade = np.ones(n)
    fade[-160:] = np.linspace(1, 0, 160)  # NSynth's notes end at (near) silence
    note *= fade
    peak_dbfs = -1.0 - 12.0 * (1 - velocity / 127)
    note *= 10 ** (peak_dbfs / 20) / (float(np.max(np.abs(note))) or 1.0)
    return note


def make_nsynth(
    out: Path,
    *,
    instruments_per_split: dict[str, int] | None = None,
    notes_per_instrument: int = 4,
    seed: int = 0,
) -> Path:
    """Write `out/nsynth/nsynth-{train,valid,test}/` (examples.json, audio/); return `out/nsynth`.

    `instruments_per_split` defaults to {"train": 6, "valid": 2, "test": 2}; a split left out
    gets an empty folder (`{}` examples). No instrument appears in two splits.
    """
    counts = dict(instruments_per_split or {"train": 6, "valid": 2, "test": 2})
    unknown = sorted(set(counts) - set(SPLITS))
    if unknown:
        raise UserError(f"NSynth sample: unknown split {unknown[0]!r}; use {', '.join(SPLITS)}")
    if any(v < 0 for v in counts.values()) or notes_per_instrument < 1:
        raise UserError("NSynth sample: instrument counts must be >= 0, notes_per_instrument >= 1")
    instruments = _nsynth_instruments(counts, seed)
    root = _fresh_dir(Path(out) / NSYNTH_DIR)
    rng_ids = _rng(seed, _NSYNTH, 1)
    note_ids = iter(
        sorted(
            rng_ids.choice(
                _NSYNTH_NOTES_TOTAL, size=len(instruments) * notes_per_instrument, replace=False
            )
        )
    )
    for split in SPLITS:
        split_dir = root / f"nsynth-{split}"
        audio_dir = split_dir / "audio"
        audio_dir.mkdir(parents=True)
        examples: dict[str, dict[str, Any]] = {}
        for inst in (i for i in instruments if i.split == split):
            family = NSYNTH_FAMILIES[inst.family]
            low, high = _FAMILY_RANGE[family]
            rng = _rng(seed, _NSYNTH, 3, inst.instrument)
            span = high - low + 1
            pitches = sorted(
                int(p)
                for p in low + rng.choice(span, size=min(notes_per_instrument, span), replace=False)
            )
            while len(pitches) < notes_per_instrument:  # more notes than the range: repeat pitches
                pitches.append(pitches[len(pitches) % span])
            for pitch in pitches:
                velocity = int(NSYNTH_VELOCITIES[int(rng.integers(len(NSYNTH_VELOCITIES)))])
                note_str = f"{inst.name}-{pitch:03d}-{velocity:03d}"
                if note_str in examples:
                    continue
                timbre = _timbre(inst, pitch, velocity)
                qualities = _qualities(timbre, family)
                audio = _render_note(
                    timbre, pitch, velocity, _rng(seed, _NSYNTH, 4, inst.instrument, pitch)
                )
                sf.write(
                    audio_dir / f"{note_str}.wav",
                    _to_pcm16(audio),
                    NSYNTH_SAMPLE_RATE,
                    subtype="PCM_16",
                    format="WAV",
                )
                examples[note_str] = {
                    "note": int(next(note_ids)),
                    "note_str": note_str,
                    "instrument": inst.instrument,
                    "instrument_str": inst.name,
                    "pitch": pitch,
                    "velocity": velocity,
                    "sample_rate": NSYNTH_SAMPLE_RATE,
                    "qualities": qualities,
                    "qualities_str": [
                        q for q, flag in zip(NSYNTH_QUALITIES, qualities, strict=True) if flag
                    ],
                    "instrument_family": inst.family,
                    "instrument_family_str": family,
                    "instrument_source": inst.source,
                    "instrument_source_str": NSYNTH_SOURCES[inst.source],
                }
        ordered = dict(sorted(examples.items()))
        (split_dir / "examples.json").write_text(
            json.dumps(ordered, indent=4) + "\n", encoding="utf-8", newline="\n"
        )
    return root


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------


def _members(dataset_dir: Path) -> Iterator[tuple[str, Path]]:
    """(member name, path) for the folder and everything in it, sorted; names start at its parent."""
    base = dataset_dir.parent
    paths = [dataset_dir, *dataset_dir.rglob("*")]
    for name, path in sorted((p.relative_to(base).as_posix(), p) for p in paths):
        if path.is_symlink():
            raise UserError(f"{path}: symbolic links are not archived")
        yield name, path


def _write_tar(fileobj: Any, dataset_dir: Path) -> None:
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in _members(dataset_dir):
            info = tarfile.TarInfo(name)
            info.mtime = _ARCHIVE_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = path.stat().st_size
                with path.open("rb") as data:
                    tar.addfile(info, data)


def make_archive(dataset_dir: Path, archive: Path) -> Path:
    """Pack `dataset_dir` the way its dataset is distributed, by the archive's suffix.

    `.tar.bz2` (LJSpeech-1.1.tar.bz2), `.tar.gz` (nsynth-test.jsonwav.tar.gz) or `.zip`
    (VCTK). The top-level member is the dataset folder itself; members are sorted, with a
    fixed mtime and uid/gid 0, so the same folder always gives the same bytes.
    """
    dataset_dir, archive = Path(dataset_dir), Path(archive)
    if not dataset_dir.is_dir():
        raise UserError(f"{dataset_dir}: not a folder, nothing to archive")
    name = archive.name.lower()
    if not name.endswith((".tar.bz2", ".tar.gz", ".tgz", ".zip")):
        raise UserError(f"{archive}: unknown archive type; use .tar.bz2, .tar.gz or .zip")
    if archive.resolve().is_relative_to(dataset_dir.resolve()):
        raise UserError(f"{archive}: the archive cannot go inside the folder it packs")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".part")
    try:
        _pack(dataset_dir, partial, name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(archive)
    return archive


def _pack(dataset_dir: Path, partial: Path, name: str) -> None:
    if name.endswith(".tar.bz2"):
        with open(partial, "wb") as raw, bz2.BZ2File(raw, "wb", compresslevel=9) as packed:
            _write_tar(packed, dataset_dir)
    elif name.endswith((".tar.gz", ".tgz")):
        with (
            open(partial, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
        ):
            _write_tar(packed, dataset_dir)
    else:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            _write_zip(zf, dataset_dir)


def _write_zip(zf: zipfile.ZipFile, dataset_dir: Path) -> None:
    for member, path in _members(dataset_dir):
        if path.is_dir():
            info = zipfile.ZipInfo(member + "/", date_time=_ZIP_DATE)
            info.external_attr = (0o40755 << 16) | 0x10
            info.create_system = 3
            zf.writestr(info, b"")
            continue
        info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
        info.external_attr = 0o100644 << 16
        info.create_system = 3
        info.compress_type = zipfile.ZIP_DEFLATED
        info.file_size = path.stat().st_size
        with path.open("rb") as src, zf.open(info, "w", force_zip64=info.file_size > 2**31) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


# --------------------------------------------------------------------------------------------
# The `wavefoundry sample-data` command
# --------------------------------------------------------------------------------------------


def make_sample_data(out: Path, datasets: list[str], cfg: SampleDataConfig) -> dict[str, Path]:
    """Generate each named corpus under `out`, replacing an earlier one; name -> its folder."""
    if not datasets:
        raise UserError(f"sample-data: name at least one dataset ({', '.join(DATASETS)})")
    unknown = [name for name in datasets if name not in DATASETS]
    if unknown:
        raise UserError(
            f"sample-data: unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}"
        )
    # Everything that could stop a dataset midway is checked before the first file is written.
    problem = ""
    bad_splits = sorted(set(cfg.nsynth_instruments_per_split) - set(SPLITS))
    per_split = cfg.nsynth_instruments_per_split
    if "vctk" in datasets and cfg.vctk_speakers > len(_VCTK_SPEAKERS):
        problem = f"vctk_speakers: VCTK has {len(_VCTK_SPEAKERS)} speakers, got {cfg.vctk_speakers}"
    elif "nsynth" in datasets and bad_splits:
        problem = f"nsynth_instruments_per_split: unknown split {bad_splits[0]!r}; use {', '.join(SPLITS)}"
    elif "nsynth" in datasets and any(v < 0 for v in per_split.values()):
        problem = "nsynth_instruments_per_split: counts must be 0 or more"
    elif "nsynth" in datasets and sum(per_split.values()) > _NSYNTH_INSTRUMENTS_TOTAL:
        problem = f"nsynth_instruments_per_split: NSynth has {_NSYNTH_INSTRUMENTS_TOTAL} instruments in all"
    if problem:
        raise UserError(f"sample_data.{problem}")
    out = Path(out)
    made: dict[str, Path] = {}
    for name in dict.fromkeys(datasets):
        if name == "ljspeech":
            made[name] = make_ljspeech(out, clips=cfg.ljspeech_clips, seed=cfg.seed)
        elif name == "vctk":
            made[name] = make_vctk(
                out,
                speakers=cfg.vctk_speakers,
                clips_per_speaker=cfg.vctk_clips_per_speaker,
                seed=cfg.seed,
            )
        else:
            made[name] = make_nsynth(
                out,
                instruments_per_split=dict(cfg.nsynth_instruments_per_split),
                notes_per_instrument=cfg.nsynth_notes_per_instrument,
                seed=cfg.seed,
            )
    return made


__all__ = [
    "LJSPEECH_DIR",
    "NSYNTH_DIR",
    "VCTK_DIR",
    "make_archive",
    "make_ljspeech",
    "make_nsynth",
    "make_sample_data",
    "make_vctk",
]
