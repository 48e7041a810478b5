"""The champion as a BentoML service: POST /vocode, POST /convert, POST /generate, GET /info.

The model is a class attribute (`bentoml.models.BentoModel`), so the Bento carries it; which
model is a build argument (`model_tag`) that `wavefoundry bento build` sets. A code prior comes
with a second one (`codec_tag`): the VQ-VAE version it was trained on, whose decoder turns its
codes into audio; the prior's own folder holds only the Transformer. Its folder holds
the exported network (model.safetensors + config.json, as training wrote it) and info.json:
where it came from in the MLflow registry and the limits from `serving` in params.yaml.

Bad requests are 4xx with a message saying what is wrong; only a fault of ours is a 5xx.
`guard.RequestGuard` checks each request's shape before BentoML parses it; the work and memory
of an upload are bounded by its samples, whatever rate its header declares.
"""

from __future__ import annotations

import json
import mmap
import time
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import soundfile as sf
import torch
from bentoml.exceptions import BentoMLException, InvalidArgument
from bentoml.validators import ContentType
from fastapi import FastAPI
from pydantic import BaseModel, Field

from wavefoundry.audio import resample, write_wav
from wavefoundry.config import ServingConfig
from wavefoundry.data.manifest import wav_data_chunk
from wavefoundry.families.io import load_model
from wavefoundry.serving import guard
from wavefoundry.tracking import TAG_CODEC_VERSION


class BuildArguments(BaseModel):
    """Set by `wavefoundry bento build` (from `serving` in params.yaml); kept in the Bento."""

    model_tag: str = "wavefoundry-champion:latest"
    codec_tag: str = ""  # a code prior's VQ-VAE (the version it was trained on); "": none
    max_concurrency: int = 32
    timeout: float = 120.0
    max_upload_bytes: int = 16 * 2**20  # RequestGuard refuses larger bodies before reading them
    task: str = ""  # the model's (vocoder, codec, generator): a 404 names its routes; "": all


class TooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


arguments = bentoml.use_arguments(BuildArguments)
info_app = FastAPI(title="wavefoundry model info")
WAV = Annotated[Path, ContentType("audio/wav")]
# What an upload may be: what libsndfile (through soundfile) reads.
READABLE = "WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF and the other formats libsndfile reads"


@bentoml.service(
    name="wavefoundry",
    traffic={"timeout": arguments.timeout, "max_concurrency": arguments.max_concurrency},
)
@bentoml.asgi_app(info_app, path="/")
class Wavefoundry:
    model = bentoml.models.BentoModel(arguments.model_tag)
    codec = bentoml.models.BentoModel(arguments.codec_tag) if arguments.codec_tag else None

    def __init__(self) -> None:
        folder = Path(self.model.path)
        self.info = json.loads((folder / "info.json").read_text())
        self.codec_info = None
        codec = None
        if self.codec is not None:
            codec = Path(self.codec.path)
            self.codec_info = json.loads((codec / "info.json").read_text())
            pinned = self.info["upstream"].get(TAG_CODEC_VERSION)
            if self.codec_info["version"] != pinned:
                raise RuntimeError(
                    f"the Bento's VQ-VAE is {self.codec_info['registered_model']} version "
                    f"{self.codec_info['version']}; the prior was trained on version {pinned}"
                )
        self.family, self.net = load_model(folder, upstream=codec)
        self.limits = ServingConfig.model_validate(self.info["limits"])
        self.sample_rate = self.family.data.sample_rate
        torch.set_grad_enabled(False)
        guard.quiet_client_errors()

    @bentoml.api(route="/vocode")
    def vocode(self, audio: Path, context: bentoml.Context) -> WAV:
        """An uploaded recording (WAV, FLAC, Ogg, MP3, ...; any rate, any channels) resynthesized
        by the model."""
        if self.family.task == "generator":
            raise InvalidArgument(
                f"this model ({self.family.name}) generates audio; use /generate, not /vocode"
            )
        samples = self._read_upload(audio)
        generated = self.family.synthesize(self.net, torch.from_numpy(samples), {})
        return self._wav(generated, context)

    @bentoml.api(route="/convert")
    def convert(self, audio: Path, speaker: str, context: bentoml.Context) -> WAV:
        """Voice conversion by a codec (VQ-VAE, VAE): an uploaded recording (WAV, FLAC, Ogg,
        ...; any rate, any channels) said again by `speaker`, one of the speakers the model was
        trained on (e.g. VCTK's p225). The answer has the upload's length at the model's sample rate."""
        if self.family.task != "codec":
            raise InvalidArgument(
                f"this model ({self.family.name}) is a {self.family.task}; /convert takes a "
                "codec (vqvae, vae)"
            )
        samples = self._read_upload(audio)
        try:
            generated = self.family.synthesize(
                self.net, torch.from_numpy(samples), {"speaker": speaker}
            )
        except ValueError as err:  # an unknown speaker
            raise InvalidArgument(str(err)) from None
        return self._wav(generated, context)

    @bentoml.api(route="/generate")
    def generate(
        self,
        context: bentoml.Context,
        pitch: Annotated[int, Field(ge=0, le=127)] = 60,
        velocity: Annotated[int, Field(ge=1, le=127)] = 100,
        instrument_family: str | None = None,
        seed: Annotated[int, Field(ge=0)] = 0,
        seconds: Annotated[float, Field(gt=0.0)] = 1.0,
        speaker: str | None = None,
    ) -> WAV:
        """A note (WaveGAN, SampleRNN or the code prior on NSynth, conditioned WaveNet) or some
        seconds of audio (a generator on speech, in `speaker`'s voice on VCTK) from labels and
        a seed."""
        if self.family.task != "generator":
            raise InvalidArgument(
                f"this model ({self.family.name}) is a {self.family.task}; POST audio to /vocode"
            )
        if seconds > self.limits.max_generate_seconds:
            raise InvalidArgument(
                f"seconds={seconds:g} is more than this service makes "
                f"({self.limits.max_generate_seconds:g})"
            )
        conditions: dict[str, Any] = {"pitch": pitch, "velocity": velocity, "seed": seed}
        conditions["seconds"] = seconds
        if speaker is not None:  # a VCTK generator's voice
            if not self.family.data.speakers:
                raise InvalidArgument(
                    f"this model ({self.family.name}) takes no speaker; leave it out"
                )
            conditions["speaker"] = speaker
        if instrument_family is not None:
            families = getattr(self.family, "nsynth_families", ())
            if not families:
                raise InvalidArgument(
                    f"this model ({self.family.name}) takes no instrument family; leave it out"
                )
            if instrument_family not in families:
                raise InvalidArgument(
                    f"unknown instrument family {instrument_family!r} (known: {', '.join(families)})"
                )
            conditions["instrument_family"] = instrument_family
        try:
            generated = self.family.synthesize(self.net, None, conditions)
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        return self._wav(generated, context)

    @info_app.get("/info")
    def model_info(self) -> dict[str, Any]:
        """Which registered model version this is, its run, data version and eval metrics; for
        a code prior also its VQ-VAE's (`codec`), the Bento's second model."""
        codec = {"codec": self.codec_info} if self.codec_info else {}
        return {**self.info, "family": self.family.name, "task": self.family.task, **codec}

    # --- pieces --------------------------------------------------------------------------

    def _read_upload(self, path: Path) -> np.ndarray:
        """The upload as (samples,) float32 mono at the model's rate. Read block by block and
        mixed down as it goes, stopping at the longest input this service takes, so memory and
        time follow the samples present, not the sizes or rate a header declares."""
        limits = self.limits
        size = path.stat().st_size
        if size == 0:
            raise InvalidArgument(f"the upload is empty: send an audio file ({READABLE})")
        if size > limits.max_upload_bytes:
            given, most = guard.sizes(size, limits.max_upload_bytes)
            raise TooLarge(f"the upload is {given}; this service takes at most {most}")
        with open(path, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as view:
            cut = wav_data_chunk(view)  # type: ignore[arg-type]  # read as bytes, not copied
        if isinstance(cut, str):  # libsndfile would quietly read what is there
            raise InvalidArgument(f"the WAV upload is {cut}: send the whole file")
        try:
            with sf.SoundFile(str(path)) as f:
                rate, channels = f.samplerate, f.channels
                if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
                    raise InvalidArgument(
                        f"the audio's sample rate is {rate} Hz; this service takes "
                        f"{limits.min_sample_rate}-{limits.max_sample_rate} Hz"
                    )
                most = int(limits.max_input_seconds * rate)
                block = max(1, 2**18 // channels)  # at most 1 MiB of float32 per block
                mixed, frames = [], 0
                for samples in f.blocks(block, dtype="float32", always_2d=True):
                    frames += len(samples)
                    if frames > most:
                        raise InvalidArgument(
                            f"the audio is longer than {limits.max_input_seconds:g} s, "
                            "the most this service takes"
                        )
                    if not np.isfinite(samples).all():
                        raise InvalidArgument("the audio has NaN or infinite samples")
                    mixed.append(samples.mean(axis=1, dtype=np.float32))
        except sf.LibsndfileError as err:
            raise InvalidArgument(
                f"the upload is not audio soundfile can read ({READABLE}): {err.error_string}"
            ) from None
        except (RuntimeError, TypeError, ValueError):
            raise InvalidArgument(
                f"the upload is not audio soundfile can read ({READABLE})"
            ) from None
        if frames == 0:
            raise InvalidArgument("the audio has no samples")
        return resample(np.concatenate(mixed), rate, self.sample_rate).astype(np.float32)

    def _wav(self, audio: torch.Tensor, context: bentoml.Context) -> Path:
        out = Path(context.temp_dir) / f"{time.monotonic_ns()}.wav"
        return write_wav(out, audio.detach().float().cpu().numpy(), self.sample_rate)


# The routes that serve each task's model; the others answer it with a 4xx saying so.
TASK_ROUTES = {
    "vocoder": ("/vocode",),
    "codec": ("/vocode", "/convert"),
    "generator": ("/generate",),
}

Wavefoundry.add_asgi_middleware(
    guard.RequestGuard,
    routes=guard.routes_of(Wavefoundry, arguments.max_upload_bytes),
    answers=TASK_ROUTES.get(arguments.task, ()),
)
