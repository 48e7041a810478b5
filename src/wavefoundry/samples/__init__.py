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

from wavefoundry.samples.corpora import (
    LJSPEECH_DIR,
    NSYNTH_DIR,
    VCTK_DIR,
    make_archive,
    make_ljspeech,
    make_nsynth,
    make_sample_data,
    make_vctk,
)

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
