"""A voice as a BentoML service: POST /synthesize (text -> 16-bit WAV), GET /info.

Two models travel in the Bento (class attributes, `bentoml.models.BentoModel`): the acoustic
champion (Tacotron 2: text -> mel frames, with its own symbol table in its config) and the
vocoder champion of the same dataset (mel frames -> audio). `wavefoundry bento build` of a
`wavefoundry-DATASET-tts` model sets both tags; without a vocoder tag the frames are voiced by
Griffin-Lim. Each folder holds the exported network and info.json (registry facts, limits).

What a request says is what the library says: `Tacotron2Family.speak` splits long text at
sentence ends and seeds each piece's prenet dropout with its index, so the same text gives
the same samples every time. Bad text (empty, only punctuation, control characters, over the
limit) or an unknown speaker is a 400 with the reason; the service keeps answering. Characters
the voice has no symbol for are left out and named in the X-Dropped-Characters header.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import bentoml
import torch
from bentoml.exceptions import InvalidArgument
from bentoml.validators import ContentType
from fastapi import FastAPI
from pydantic import BaseModel

from wavefoundry.audio import write_wav
from wavefoundry.families.io import load_model
from wavefoundry.serving import guard
from wavefoundry.text import TextError


class VoiceArguments(BaseModel):
    """Set by `wavefoundry bento build` for a tts model; kept in the Bento."""

    acoustic_tag: str = "wavefoundry-tts:latest"
    vocoder_tag: str = ""  # "" : Griffin-Lim
    max_concurrency: int = 32
    timeout: float = 120.0
    max_upload_bytes: int = 16 * 2**20  # unused here: /synthesize takes JSON (guard.py's limit)


arguments = bentoml.use_arguments(VoiceArguments)
info_app = FastAPI(title="wavefoundry voice info")
WAV = Annotated[Path, ContentType("audio/wav")]
DROPPED_HEADER = "X-Dropped-Characters"  # what the symbol table could not spell, if anything


def load_voice(acoustic_folder: Path, vocoder_folder: Path | None) -> tuple[Any, Any, Any]:
    """(acoustic family, its network, vocoder callable or None) from two exported model
    folders, as the service and `bench/tts.py` load them."""
    family, net = load_model(acoustic_folder)
    if vocoder_folder is None:
        return family, net, None
    vocoder_family, vocoder = load_model(vocoder_folder)
    return family, net, lambda mel: vocoder_family.vocode_mel(vocoder, mel)


def dropped_header(dropped: tuple[str, ...]) -> str:
    """The dropped characters as one header value: ASCII as it is, anything else as a Python
    escape (`\\u2603`), since an HTTP header carries Latin-1 at most."""
    return "".join(c if c.isascii() else c.encode("unicode_escape").decode() for c in dropped)


@bentoml.service(
    name="wavefoundry-voice",
    traffic={"timeout": arguments.timeout, "max_concurrency": arguments.max_concurrency},
)
@bentoml.asgi_app(info_app, path="/")
class Voice:
    acoustic = bentoml.models.BentoModel(arguments.acoustic_tag)
    vocoder = bentoml.models.BentoModel(arguments.vocoder_tag) if arguments.vocoder_tag else None

    def __init__(self) -> None:
        acoustic = Path(self.acoustic.path)
        vocoder = Path(self.vocoder.path) if self.vocoder is not None else None
        self.family, self.net, self.vocode = load_voice(acoustic, vocoder)
        self.info = json.loads((acoustic / "info.json").read_text())
        self.vocoder_info = json.loads((vocoder / "info.json").read_text()) if vocoder else None
        self.limits = self.info["limits"]
        self.sample_rate = self.family.data.sample_rate
        torch.set_grad_enabled(False)
        guard.quiet_client_errors()

    @bentoml.api(route="/synthesize")
    def synthesize(self, text: str, context: bentoml.Context, speaker: str | None = None) -> WAV:
        """`text` (and `speaker`, for a multi-speaker voice) spoken as 16-bit WAV at the
        dataset's rate."""
        limit = self.limits["max_text_chars"]
        if len(text) > limit:
            raise InvalidArgument(
                f"the text is {len(text)} characters; this voice speaks at most {limit}"
            )
        try:
            dropped = self.family.symbols.encode(text).dropped
            audio = self.family.speak(
                self.net, text, speaker, self.vocode, self.limits["max_sentence_chars"]
            )
        except (TextError, ValueError) as err:
            raise InvalidArgument(str(err)) from None
        if dropped:  # characters the voice has no symbol for: said, not hidden
            context.response.headers[DROPPED_HEADER] = dropped_header(dropped)
        out = Path(context.temp_dir) / f"{time.monotonic_ns()}.wav"
        return write_wav(out, audio.numpy(), self.sample_rate)

    @info_app.get("/info")
    def model_info(self) -> dict[str, Any]:
        """Both models: the acoustic champion (registered model, version, run, metrics) and
        the vocoder that voices it (or Griffin-Lim), with the speakers it knows."""
        return {
            **self.info,
            "family": self.family.name,
            "task": self.family.task,
            "speakers": list(self.family.data.speakers),
            "vocoder": self.vocoder_info or {"registered_model": "griffin-lim", "version": ""},
        }


Voice.add_asgi_middleware(
    guard.RequestGuard, routes=guard.routes_of(Voice, arguments.max_upload_bytes)
)
