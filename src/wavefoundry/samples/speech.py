"""Speech-like audio: letters -> segments -> control tracks -> glottal source -> formant cascade.

A voice (pitch, vocal-tract length, breathiness, rate) reads a list of words. Each word's
spelling gives segments (vowels, diphthongs, nasals, liquids, fricatives, stops) with formant
targets; a glottal-pulse source with a smooth pitch contour (declination, accents, drift,
jitter) goes through time-varying formant resonators, with frication noise, stop bursts and
aspiration added, and pauses at commas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from wavefoundry.samples.text import FUNCTION_WORDS

VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
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
class Voice:
    f0: float  # base pitch, Hz
    formant_scale: float  # vocal-tract length: women's formants ~15-20 % higher
    open_quotient: float  # fraction of a glottal cycle the folds are open
    breath: float  # aspiration mixed into voicing
    rate: float  # speaking-rate multiplier on durations (1 = average)
    accent_depth: float  # how far pitch accents rise


# --------------------------------------------------------------------------------------------
# Words -> segments
# --------------------------------------------------------------------------------------------


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
        return VOWEL_FORMANTS[first], VOWEL_FORMANTS[second]
    return VOWEL_FORMANTS[name], VOWEL_FORMANTS[name]


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


def word_seconds(word: str, rng: np.random.Generator) -> float:
    """About how long `word` takes to say, with the gap after it (its segments drawn from `rng`)."""
    segs = _word_segs(word, rng, word.lower() in FUNCTION_WORDS)
    return sum(s.dur for s in segs) + 0.012


def _plan_words(
    words: Sequence[str], rng: np.random.Generator, pauses_after: set[int]
) -> list[_Seg]:
    segs: list[_Seg] = []
    for index, word in enumerate(words):
        segs.extend(_word_segs(word, rng, function_word=word.lower() in FUNCTION_WORDS))
        if index == len(words) - 1:
            break
        if index in pauses_after:
            segs.append(_Seg(rng.uniform(0.18, 0.32)))
        elif rng.random() < 0.3:
            segs.append(_Seg(rng.uniform(0.015, 0.06)))
    return segs


def _scale(segs: list[_Seg], factor: float) -> list[_Seg]:
    return [dataclasses.replace(s, dur=s.dur * factor) for s in segs]


def plan_utterance(
    words: Sequence[str],
    pauses_after: set[int],
    voice: Voice,
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
# Segments -> waveform
# --------------------------------------------------------------------------------------------


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


def bandpass(lo: float, hi: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    hi = min(hi, 0.45 * sr)
    b, a = signal.butter(2, [lo, hi], btype="bandpass", fs=sr)
    return b, a


def render_speech(
    segs: list[_Seg], voice: Voice, sr: int, rng: np.random.Generator, peak_dbfs: float
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
        formants[:] = VOWEL_FORMANTS["ah"]
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
    b_s, a_s = bandpass(3800, 8500, sr)
    b_sh, a_sh = bandpass(1900, 4800, sr)
    frication = signal.lfilter(b_s, a_s, noise) * _upsample(fric_s * 0.8, hop)[:n]
    frication += signal.lfilter(b_sh, a_sh, noise) * _upsample(fric_sh * 0.7, hop)[:n]
    frication += noise * _upsample(fric_f * 0.3, hop)[:n]
    speech = voiced + reference * frication

    b_hp, a_hp = signal.butter(2, 60.0, btype="highpass", fs=sr)
    speech = signal.lfilter(b_hp, a_hp, speech)
    peak = float(np.max(np.abs(speech))) or 1.0
    speech *= 10 ** (peak_dbfs / 20) / peak
    return speech


def room_noise(n: int, rng: np.random.Generator, level_dbfs: float) -> np.ndarray:
    """A soft, slightly low-heavy noise floor."""
    white = rng.standard_normal(n)
    floor = signal.lfilter([1.0], [1.0, -0.6], white) * 0.8
    return floor * 10 ** (level_dbfs / 20)
