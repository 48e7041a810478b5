"""The character symbol set Tacotron 2 reads (Shen et al. 2018 feed characters, not phonemes).

A `SymbolTable` is the ordered list of symbols; a symbol's id is its position. Id 0 is the
padding symbol and id 1 the end-of-sentence symbol appended to every utterance. The table is
saved with every model (`to_json` into the exported model's config) so a served model encodes
text exactly as it was encoded in training, whatever this file says later.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field

from wavefoundry.text.normalize import folded_away, normalize

PAD = "_"
EOS = "~"
PUNCTUATION = "!'(),-.:;? "  # what a reader pauses or changes tone at; space separates words
LETTERS = "abcdefghijklmnopqrstuvwxyz"
DEFAULT_SYMBOLS: tuple[str, ...] = (PAD, EOS, *PUNCTUATION, *LETTERS)


class TextError(ValueError):
    """Text that cannot be spoken (empty, only punctuation, control characters, too long).
    The message is one line for the person who sent it."""


@dataclass(frozen=True)
class Encoded:
    """A sentence as symbol ids (ending with EOS), its normalized text, and the characters
    that were dropped because the table has no symbol for them (sorted, each once)."""

    ids: list[int]
    text: str
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class SymbolTable:
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols) or self.symbols[:2] != (PAD, EOS):
            raise ValueError(f"a symbol table starts with {PAD!r}, {EOS!r} and repeats nothing")
        object.__setattr__(self, "_ids", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> Encoded:
        """`text` normalized (normalize.py), then one id per character, EOS last.

        Characters without a symbol are dropped and listed in `dropped` (with those that ASCII
        folding drops, `folded_away`); control characters and text with no letter left raise
        TextError (one line saying why).
        """
        control = sorted({c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"})
        if control:
            shown = ", ".join(f"U+{ord(c):04X}" for c in control)
            raise TextError(f"text contains control characters ({shown})")
        normalized = normalize(text)
        dropped = tuple(sorted({c for c in normalized if c not in self._ids} | folded_away(text)))
        kept = "".join(c for c in normalized if c in self._ids).strip()
        if not any(c.isalpha() for c in kept):
            raise TextError(
                "nothing speakable in the text: it needs at least one letter or number"
                + (f" (dropped: {''.join(dropped)})" if dropped else "")
            )
        return Encoded([self._ids[c] for c in kept] + [self._ids[EOS]], kept, dropped)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i > 1)

    def to_json(self) -> str:
        return json.dumps(list(self.symbols))

    @classmethod
    def from_json(cls, text: str) -> SymbolTable:
        return cls(tuple(json.loads(text)))


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Long text cut at sentence ends (. ! ? followed by space) into pieces of at most
    `max_chars` characters where the sentences allow; a longer sentence is cut at its last
    comma or space before the limit. Empty pieces are left out."""
    pieces: list[str] = []
    start = 0
    for i, char in enumerate(text):
        if char in ".!?" and (i + 1 == len(text) or text[i + 1].isspace()):
            pieces.append(text[start : i + 1])
            start = i + 1
    pieces.append(text[start:])
    out: list[str] = []
    for piece in (p.strip() for p in pieces):
        while len(piece) > max_chars:
            cut = max(piece.rfind(",", 0, max_chars), piece.rfind(" ", 0, max_chars))
            cut = cut if cut > 0 else max_chars
            out.append(piece[: cut + 1].strip())
            piece = piece[cut + 1 :].strip()
        out.append(piece)
    return [p for p in out if p]
