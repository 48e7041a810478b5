"""The manifest's columns: one row per clip, shared by ingest, validation and store.

Every clip a dataset mentions gets a row, good or bad: a clip that cannot be used keeps its
row with a `status` other than "ok" and a `reason` a person can act on. Nothing is dropped.
"""

from __future__ import annotations

import re

# Identity and placement.
IDENTITY = ("dataset", "clip_id", "path", "split")

# Conditioning columns each dataset carries (absent columns are simply not there).
CONDITIONING = {
    "ljspeech": ("text", "normalized_text"),
    "vctk": ("speaker", "gender", "age", "accent", "region", "text", "mic"),
    "nsynth": (
        "note_str",
        "note",
        "pitch",
        "velocity",
        "instrument",
        "instrument_str",
        "instrument_family",
        "instrument_family_str",
        "instrument_source",
        "instrument_source_str",
        "qualities",
        "qualities_str",
    ),
}

# Measured from the audio file itself (0 / "" / NaN where the file could not be read).
STATS = (
    "sample_rate",  # int, Hz
    "channels",  # int
    "frames",  # int, samples per channel
    "duration",  # float, seconds
    "subtype",  # str, soundfile's subtype: PCM_16, PCM_U8, FLOAT, ...
    "peak",  # float, max |x| with full scale = 1.0
    "rms_db",  # float, dBFS of the whole clip after removing DC (-inf for digital silence)
    "clipping",  # float, fraction of samples at or above 0.999 full scale
    "silence",  # float, fraction of 20 ms frames quieter than -50 dBFS (each frame's mean removed)
    "dc_offset",  # float, mean sample value of the channel furthest from 0
    "non_finite",  # bool, any NaN or inf sample
    "bytes",  # int, file size
    "sha256",  # str, of the file's bytes
)

# status: "ok" or one of the problems below; reason: one line for a person ("" when ok).
STATUS = ("status", "reason")
OK = "ok"
UNREADABLE = "unreadable"  # not audio, truncated, empty, decoder error
MISSING_AUDIO = "missing_audio"  # listed in the metadata, no audio file
UNLISTED = "unlisted"  # audio file the metadata does not mention
BAD_METADATA = "bad_metadata"  # metadata row that cannot be decoded or parsed

# warning: how a usable file was read against what it declares, for a person ("" when none),
# e.g. a WAV header's placeholder data size, not believed. It does not make a clip unusable.
WARNING = "warning"


def columns(dataset: str) -> tuple[str, ...]:
    return IDENTITY + CONDITIONING[dataset] + STATS + STATUS + (WARNING,)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def error_text(err: BaseException) -> str:
    """An exception as a reason that is the same on every run: libsndfile's own message
    without the file object it was given, and no memory address (`<... at 0x7f...>`)."""
    text = getattr(err, "error_string", None) or str(err) or type(err).__name__
    return stable_text(str(text))


def stable_text(text: str) -> str:
    """`text` without memory addresses, which differ from run to run."""
    return _ADDRESS.sub("", text).strip()
