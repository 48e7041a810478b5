"""Instrument-like notes in NSynth's vocabulary: instruments, their timbres, a rendered note.

Additive synthesis at the MIDI pitch's frequency with per-family partials (bright brass,
near-sine flute, sawtooth-like strings, inharmonic mallets, percussive keyboards), loudness
and brightness by velocity, held 3 s then released over the note's last second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal

from wavefoundry.config import SPLITS
from wavefoundry.errors import UserError
from wavefoundry.samples.speech import VOWEL_FORMANTS, bandpass
from wavefoundry.samples.text import pick

NSYNTH_SAMPLE_RATE = 16000
NSYNTH_FRAMES = 64000  # 4 s: note held 3 s, then 1 s of release

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
NSYNTH_INSTRUMENTS_TOTAL = 1006

# Plausible MIDI range and the sources NSynth has for each family.
FAMILY_RANGE = {
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


def nsynth_instruments(counts: dict[str, int], rng: np.random.Generator) -> list[_Instrument]:
    """`counts[split]` instruments for each split, every one a different NSynth instrument."""
    total = sum(counts.values())
    if total > NSYNTH_INSTRUMENTS_TOTAL:
        raise UserError(
            f"NSynth sample: the dataset has {NSYNTH_INSTRUMENTS_TOTAL} instruments, asked for {total}"
        )
    instrument_ids = rng.choice(NSYNTH_INSTRUMENTS_TOTAL, size=total, replace=False)
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


def instrument_timbre(
    inst: _Instrument, pitch: int, velocity: int, rng: np.random.Generator
) -> _Timbre:
    """The instrument's sound at one pitch and velocity; `rng` is seeded by `inst.timbre`."""
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
        vowel = VOWEL_FORMANTS[pick(rng, ("aa", "ao", "uw", "ah", "eh"))]
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


def note_qualities(timbre: _Timbre, family: str) -> list[int]:
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


def render_note(timbre: _Timbre, pitch: int, velocity: int, rng: np.random.Generator) -> np.ndarray:
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
        b, a = bandpass(min(f0, 2000.0), min(6 * f0, 7000.0), sr)
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
