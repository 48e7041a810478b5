"""The sample corpora on disk: LJ Speech 1.1, VCTK 0.92 and NSynth, their archives, and the
`wavefoundry sample-data` command.

Every random draw comes from `_rng(seed, corpus, ...)`: each corpus has its own stream and each
clip, speaker or note its own keys, so a file depends only on the seed and its own place.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import multiprocessing
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy import signal

from wavefoundry.config import DATASETS, SPLITS, SampleDataConfig
from wavefoundry.errors import UserError, writing
from wavefoundry.locks import file_lock
from wavefoundry.samples.notes import (
    FAMILY_RANGE,
    NSYNTH_FAMILIES,
    NSYNTH_INSTRUMENTS_TOTAL,
    NSYNTH_QUALITIES,
    NSYNTH_SAMPLE_RATE,
    NSYNTH_SOURCES,
    NSYNTH_VELOCITIES,
    instrument_timbre,
    note_qualities,
    nsynth_instruments,
    render_note,
)
from wavefoundry.samples.speech import (
    Voice,
    plan_utterance,
    render_speech,
    room_noise,
    word_seconds,
)
from wavefoundry.samples.text import LJ_VOCABULARY, NEWS_VOCABULARY, make_sentence

LJSPEECH_DIR = "LJSpeech-1.1"
LJSPEECH_SAMPLE_RATE = 22050
VCTK_DIR = "VCTK-Corpus-0.92"
VCTK_SAMPLE_RATE = 48000
NSYNTH_DIR = "nsynth"

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


def _write_pcm16(path: Path, audio: np.ndarray, sr: int) -> None:
    """16-bit PCM in a WAV or FLAC file, by the path's suffix."""
    pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)
    # Encoded in memory, then written by Python: a full disk is an OSError (ENOSPC), where
    # libsndfile would only say "System error".
    encoded = io.BytesIO()
    sf.write(encoded, pcm, sr, subtype="PCM_16", format=path.suffix[1:].upper())
    path.write_bytes(encoded.getvalue())


# --------------------------------------------------------------------------------------------
# LJ Speech 1.1
# --------------------------------------------------------------------------------------------

_LJ_VOICE = Voice(
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
    sentence = make_sentence(
        rng, LJ_VOCABULARY, 0.9 * (duration - lead - tail), special, word_seconds
    )
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
    segs = plan_utterance(
        clip.words, set(clip.pauses_after), _LJ_VOICE, rng, sr=sr, lead=clip.lead, tail=clip.tail,
        duration=clip.duration,
    )  # fmt: skip
    voice = Voice(
        f0=_LJ_VOICE.f0 * rng.uniform(0.95, 1.05),
        formant_scale=_LJ_VOICE.formant_scale,
        open_quotient=_LJ_VOICE.open_quotient,
        breath=_LJ_VOICE.breath,
        rate=1.0,
        accent_depth=rng.uniform(0.8, 1.2),
    )
    speech = render_speech(segs, voice, sr, rng, peak_dbfs=rng.uniform(-3.0, -1.0))
    speech += room_noise(len(speech), rng, -66.0)
    _write_pcm16(wavs / f"{clip_id}.wav", speech, sr)


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


def _vctk_voice(seed: int, speaker: str) -> Voice:
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
    return Voice(
        f0=f0, formant_scale=scale, open_quotient=oq, breath=breath,
        rate=rng.uniform(0.9, 1.12), accent_depth=rng.uniform(0.7, 1.3),
    )  # fmt: skip


def _vctk_sentence(rng: np.random.Generator) -> str:
    return make_sentence(rng, NEWS_VOCABULARY, rng.uniform(1.0, 3.2), False, word_seconds).text


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
    return wet + room_noise(len(wet), rng, -57.0)


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
            segs = plan_utterance(
                words,
                pauses,
                voice,
                rng,
                sr=sr,
                lead=rng.uniform(0.08, 0.2),
                tail=rng.uniform(0.08, 0.2),
            )
            clean = render_speech(segs, voice, sr, rng, peak_dbfs=rng.uniform(-3.0, -1.0))
            mic1 = clean + room_noise(len(clean), rng, -68.0)
            _write_pcm16(audio_dir / f"{utterance}_mic1.flac", mic1, sr)
            if speaker != VCTK_NO_MIC2:
                mic2 = _mic2(clean, sr, rng)
                _write_pcm16(audio_dir / f"{utterance}_mic2.flac", mic2, sr)
    return root


# --------------------------------------------------------------------------------------------
# NSynth
# --------------------------------------------------------------------------------------------

_NSYNTH_NOTES_TOTAL = 305979  # note ids are unique across the three splits


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
    instruments = nsynth_instruments(counts, _rng(seed, _NSYNTH, 0))
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
            low, high = FAMILY_RANGE[family]
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
                timbre = instrument_timbre(inst, pitch, velocity, _rng(inst.timbre, _NSYNTH, 2))
                qualities = note_qualities(timbre, family)
                audio = render_note(
                    timbre, pitch, velocity, _rng(seed, _NSYNTH, 4, inst.instrument, pitch)
                )
                _write_pcm16(audio_dir / f"{note_str}.wav", audio, NSYNTH_SAMPLE_RATE)
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

# Archive members get this mtime (2019-11-13 00:00 UTC, VCTK 0.92's release month).
_ARCHIVE_MTIME = 1573603200
_ZIP_DATE = (2019, 11, 13, 0, 0, 0)


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


def _make_one(out: Path, name: str, cfg: SampleDataConfig) -> Path:
    if name == "ljspeech":
        return make_ljspeech(out, clips=cfg.ljspeech_clips, seed=cfg.seed)
    if name == "vctk":
        return make_vctk(
            out,
            speakers=cfg.vctk_speakers,
            clips_per_speaker=cfg.vctk_clips_per_speaker,
            seed=cfg.seed,
        )
    return make_nsynth(
        out,
        instruments_per_split=dict(cfg.nsynth_instruments_per_split),
        notes_per_instrument=cfg.nsynth_notes_per_instrument,
        seed=cfg.seed,
    )


def _recipe(name: str, cfg: SampleDataConfig) -> str:
    code = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        code.update(source.read_bytes())
    return json.dumps(
        {"dataset": name, "settings": cfg.model_dump(mode="json"), "code": code.hexdigest()},
        sort_keys=True,
    )


def _listing(folder: Path) -> str:
    """Every file under `folder` with its size and modification time: a file changed, added
    or removed since the corpus was made shows (a stat of each file, no reading)."""
    if not folder.is_dir():
        return "\nmissing"
    entries = sorted(
        f"{path.relative_to(folder)} {stat.st_size} {stat.st_mtime_ns}"
        for path in folder.rglob("*")
        if path.is_file() and (stat := path.stat())
    )
    return "\n" + hashlib.sha256("\n".join(entries).encode()).hexdigest()


def _made_atomically(out: Path, name: str, cfg: SampleDataConfig) -> Path:
    """The corpus `name` under `out`: made in a staging folder beside it and renamed into
    place (the old one, if any, renamed away first and then deleted); kept as it is when the
    same settings and code made it."""
    recipe = _recipe(name, cfg)
    target = out / {"ljspeech": LJSPEECH_DIR, "vctk": VCTK_DIR}.get(name, NSYNTH_DIR)
    stamp = out / f".{name}.made-with.json"  # beside it: the corpus holds only its own files
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == recipe + _listing(target):
        return target
    out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for left in out.glob(f".{name}-making-*"):  # a writer killed midway (we hold the lock)
        shutil.rmtree(left, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-making-", dir=out))
    try:
        with writing(target):
            folder = _make_one(staging, name, cfg)
        old = staging / "old"
        if target.exists():
            target.rename(old)
        try:
            folder.rename(target)
        except OSError:
            if old.exists():
                old.rename(target)
            raise
        with writing(stamp):
            stamp.write_text(recipe + _listing(target), encoding="utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def make_sample_data(out: Path, datasets: list[str], cfg: SampleDataConfig) -> dict[str, Path]:
    """Generate each named corpus under `out`, replacing an earlier one made with other
    settings (or other code); name -> its folder. Concurrent callers take turns (a lock in
    `out`), and a corpus appears whole or not at all."""
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
    elif "nsynth" in datasets and sum(per_split.values()) > NSYNTH_INSTRUMENTS_TOTAL:
        problem = f"nsynth_instruments_per_split: NSynth has {NSYNTH_INSTRUMENTS_TOTAL} instruments in all"
    if problem:
        raise UserError(f"sample_data.{problem}")
    out = Path(out)
    made: dict[str, Path] = {}
    # Runs in one project folder take turns; each corpus is made beside its place and swapped
    # in whole, so nobody ever reads a half-written one. Unchanged settings reuse it.
    with file_lock(
        out / ".sample-data.lock", "the sample corpora", on_wait="waiting for the sample corpora"
    ):
        for name in dict.fromkeys(datasets):
            made[name] = _made_atomically(out, name, cfg)
    return made
