"""Tacotron 2's training: characters in, mel frames out (Shen et al. 2018), task "acoustic".

One network, "tacotron2". A batch is whole clips with their transcripts (the store's
`normalized_text` where the dataset has one, else `text`), bucketed by length and padded;
the transcript goes through the model's own symbol table (text/), the clip through the same
log-mel as the vocoders (audio.log_mel), so a vocoder champion of the dataset can voice the
frames. Teacher forcing in training; losses MSE before and after the postnet, stop-token BCE
and Tachibana's guided attention loss (models/tacotron2.py). The logged "loss" is their sum.

Audio from the frames: `vocode` is Griffin-Lim here; a caller with a vocoder champion (the
trainer's validation samples, the scorer, the voice service) passes its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from wavefoundry.audio import griffin_lim, log_mel
from wavefoundry.data.stored import DataSpec
from wavefoundry.errors import UserError
from wavefoundry.families.base import Family, Step, mel_config, unwrap
from wavefoundry.models.tacotron2 import Tacotron2, Tacotron2Config, Tacotron2Output, tacotron2_loss
from wavefoundry.text.symbols import TextError, split_sentences

Vocoder = Callable[[torch.Tensor], torch.Tensor]  # (n_mels, frames) log-mel -> (samples,) audio


class Tacotron2Family(Family):
    name = "tacotron2"
    config_class = Tacotron2Config
    datasets = ("ljspeech", "vctk")
    inference_net = "tacotron2"
    task = "acoustic"
    utterances = True

    def __init__(self, config: Tacotron2Config, data: DataSpec):
        super().__init__(config, data)
        self.mel = mel_config(data.sample_rate, self.config)
        self.symbols = self.config.symbol_table

    def adapt(self, config: Tacotron2Config, data: DataSpec) -> Tacotron2Config:
        """One speaker embedding per speaker of the train split (VCTK); none for LJ Speech."""
        return dataclasses.replace(config, n_speakers=len(data.speakers))

    @property
    def segment_length(self) -> int:
        """The longest clip taken, in samples: `max_frames` mel frames."""
        return self.config.max_frames * self.config.hop_length

    def build(self) -> dict[str, nn.Module]:
        return {"tacotron2": Tacotron2(self.config)}

    # --- batches ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """A transcript or request to symbol ids (EOS last); TextError when nothing is left."""
        return self.symbols.encode(text).ids

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """Padded clips (B, T) + their lengths and transcripts -> text ids (B, N) with lengths,
        mel (B, n_mels, frames) with frames a multiple of r, mel lengths, speaker ids."""
        texts = batch.get("normalized_text") or batch["text"]
        ids = []
        for clip_id, text in zip(batch["clip_id"], texts, strict=True):
            try:
                ids.append(self.encode(str(text or "")))
            except TextError as err:
                raise UserError(f"clip {clip_id}: its transcript cannot be spoken: {err}") from None
        text_lengths = torch.tensor([len(i) for i in ids], dtype=torch.long)
        text = torch.zeros(len(ids), int(text_lengths.max()), dtype=torch.long)
        for row, sequence in enumerate(ids):
            text[row, : len(sequence)] = torch.tensor(sequence)
        hop, r = self.config.hop_length, self.config.n_frames_per_step
        audio = batch["audio"].to(device, torch.float32)
        mel_lengths = torch.as_tensor(batch["length"]) // hop
        frames = -(-int(mel_lengths.max()) // r) * r
        audio = nn.functional.pad(audio, (0, max(0, frames * hop - audio.shape[-1])))
        prepared = {
            "text": text.to(device),
            "text_lengths": text_lengths.to(device),
            "mel": log_mel(audio[:, : frames * hop], self.mel),
            "mel_lengths": mel_lengths.to(device),
            "audio": audio,
        }
        if self.data.speakers:
            prepared["speaker"] = self.data.speaker_index(batch["speaker"]).to(device)
        return prepared

    def _forward(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> Tacotron2Output:
        return net(
            batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"],
            batch.get("speaker"),
        )  # fmt: skip

    def _losses(self, out: Tacotron2Output, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        return tacotron2_loss(
            out, batch["mel"], batch["mel_lengths"], batch["text_lengths"], self.config
        )

    # --- training --------------------------------------------------------------------------

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            out = self._forward(nets["tacotron2"], batch)
        losses = self._losses(out, batch)  # in float32
        step.optimize("tacotron2", losses["loss"])
        return {name: value.item() for name, value in losses.items()}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        out = self._forward(nets["tacotron2"], batch)
        return {name: value.item() for name, value in self._losses(out, batch).items()}

    # --- inference -------------------------------------------------------------------------

    @torch.no_grad()
    def text_to_mel(
        self, net: nn.Module, text: str, speaker: Any = None, seed: int = 0
    ) -> Tacotron2Output:
        """Free-running synthesis of one sentence: mel (1, n_mels, frames) with frames =
        steps * r, alignments, and `steps` (decoder steps until the gate fired, or
        `max_decoder_steps`). The prenet's dropout is drawn from a generator seeded with
        `seed`, so the same text, speaker and seed give the same frames. TextError for text
        with nothing speakable; ValueError for an unknown speaker."""
        model = unwrap(net)
        device = next(model.parameters()).device
        ids = torch.tensor([self.encode(text)], device=device)
        speaker_ids = None
        if self.data.speakers:
            speaker_ids = torch.tensor([self.data.speaker_id(speaker)], device=device)
        elif speaker not in (None, ""):
            self.data.speaker_id(speaker)  # raises: this voice has no speakers
        generator = torch.Generator(device=device).manual_seed(seed)
        out = model.infer(ids, speaker=speaker_ids, generator=generator)
        frames = int(out.steps[0]) * self.config.n_frames_per_step
        out.mel_postnet = out.mel_postnet[..., :frames]
        out.mel = out.mel[..., :frames]
        return out

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Griffin-Lim audio (samples,) from (n_mels, frames) log-mel frames."""
        return griffin_lim(mel, self.mel)

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """Speech for conditions["text"] (and "speaker"; "seed" for the prenet, default 0)
        through Griffin-Lim, or `conditions["vocoder"]` (a log-mel -> audio callable) when
        given. `audio` is ignored. Returns 1-D float audio in [-1, 1]."""
        if not conditions.get("text"):
            raise TextError("Tacotron 2 speaks text: conditions['text'] is required")
        out = self.text_to_mel(
            net, conditions["text"], conditions.get("speaker"), int(conditions.get("seed", 0))
        )
        vocoder: Vocoder = conditions.get("vocoder") or self.vocode
        return vocoder(out.mel_postnet[0]).reshape(-1).clamp(-1.0, 1.0)

    @torch.no_grad()
    def speak(
        self,
        net: nn.Module,
        text: str,
        speaker: Any = None,
        vocoder: Vocoder | None = None,
        max_sentence_chars: int = 200,
    ) -> torch.Tensor:
        """What the voice service says for `text`: the text split at sentence ends into pieces
        of at most `max_sentence_chars` (text/symbols.split_sentences), piece i spoken with
        prenet seed i and voiced by `vocoder` (Griffin-Lim when None), the pieces joined.
        The same text, speaker and vocoder always give the same samples. TextError when a
        piece has nothing speakable, ValueError for an unknown speaker."""
        pieces = split_sentences(text, max_sentence_chars)
        if not pieces:
            raise TextError("nothing speakable in the text: it is empty")
        speech = []
        for seed, piece in enumerate(pieces):
            out = self.text_to_mel(net, piece, speaker, seed)
            speech.append((vocoder or self.vocode)(out.mel_postnet[0]).reshape(-1).cpu())
        return torch.cat(speech).clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(
        self,
        nets: dict[str, nn.Module],
        batch: dict[str, torch.Tensor],
        vocoder: Vocoder | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The first two valid sentences spoken free-running and voiced by `vocoder` (the
        trainer hands in the dataset's vocoder champion; Griffin-Lim when None), beside their
        recordings; both cut to the shorter."""
        generated, reference = [], []
        for row in range(min(2, batch["text"].shape[0])):
            out = self._infer_row(nets["tacotron2"], batch, row)
            speech = (vocoder or self.vocode)(out.mel_postnet[0]).reshape(-1).clamp(-1.0, 1.0).cpu()
            real = batch["audio"][row, : int(batch["mel_lengths"][row]) * self.config.hop_length]
            length = min(len(speech), len(real))
            generated.append(speech[:length])
            reference.append(real[:length].cpu())
        length = min(len(g) for g in generated)
        return (
            torch.stack([r[:length] for r in reference]),
            torch.stack([g[:length] for g in generated]),
        )

    def _infer_row(
        self, net: nn.Module, batch: dict[str, torch.Tensor], row: int
    ) -> Tacotron2Output:
        length = int(batch["text_lengths"][row])
        speaker = batch["speaker"][row : row + 1] if "speaker" in batch else None
        generator = torch.Generator(device=batch["text"].device).manual_seed(row)
        return unwrap(net).infer(
            batch["text"][row : row + 1, :length], speaker=speaker, generator=generator
        )

    @torch.no_grad()
    def figures(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The first valid sentence: its attention alignment teacher-forced and free-running,
        and the predicted mel (free-running, after the postnet) above the reference."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        net = nets["tacotron2"]
        forced = self._forward(net, batch)
        free = self._infer_row(net, batch, 0)
        n, frames = int(batch["text_lengths"][0]), int(batch["mel_lengths"][0])
        steps = -(-frames // self.config.n_frames_per_step)
        alignment = Figure(figsize=(10, 3.6))
        for col, (title, weights) in enumerate(
            [
                ("teacher-forced", forced.alignments[0, :steps, :n]),
                (f"free-running ({int(free.steps[0])} steps)", free.alignments[0, :, :n]),
            ],
            start=1,
        ):
            axes = alignment.add_subplot(1, 2, col)
            axes.imshow(weights.T.cpu().numpy(), origin="lower", aspect="auto", vmin=0, vmax=1)
            axes.set_title(f"alignment, {title}", fontsize=9)
            axes.set_xlabel("decoder step")
            axes.set_ylabel("character")
        alignment.tight_layout()
        mel = Figure(figsize=(6, 4.8))
        for row, (title, frames_shown) in enumerate(
            [("reference", batch["mel"][0, :, :frames]), ("predicted", free.mel_postnet[0])],
            start=1,
        ):
            axes = mel.add_subplot(2, 1, row)
            axes.imshow(frames_shown.cpu().numpy(), origin="lower", aspect="auto")
            axes.set_title(f"mel, {title}", fontsize=9)
        mel.tight_layout()
        return {"alignment": alignment, "mel": mel}
