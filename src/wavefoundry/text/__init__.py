"""Text for text-to-speech: normalisation (normalize.py) and the character symbol set
(symbols.py) that is saved with every acoustic model."""

from wavefoundry.text.normalize import normalize
from wavefoundry.text.symbols import SymbolTable, TextError, split_sentences

__all__ = ["SymbolTable", "TextError", "normalize", "split_sentences"]
