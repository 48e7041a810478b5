"""Pseudo-English for the sample transcripts: vocabularies, numbers in words, sentences.

The vocabularies echo LJ Speech's books (Newgate's chronicles, the Warren Commission report)
and VCTK's newspaper sentences. A sentence grows phrase by phrase until it would take about the
wanted time to say; how long a word takes is the caller's to tell (the speech model's
estimate), so this module knows nothing of sound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@dataclass(frozen=True)
class _Vocabulary:
    nouns: tuple[str, ...]
    names: tuple[str, ...]  # people and places, capitalised
    adjectives: tuple[str, ...]
    passive: tuple[str, ...]  # past participles: "was examined"
    intransitive: tuple[str, ...]  # "remained"


_DETERMINERS = ("the",) * 7 + ("a", "a", "this", "that", "every", "his", "their", "no")
_AUXILIARIES = ("was", "was", "were", "had been", "would be")
_PREPOSITIONS = _words("of of of in in to from by with at upon into under through after before")
_JOINERS = ("and", "and", "and", "but", "which", "while", "when")
# Said short and unstressed by the speech model.
FUNCTION_WORDS = frozenset(
    [*_DETERMINERS, *_PREPOSITIONS, *_JOINERS, *_words("was were had been would be mister")]
)

# LJ Speech's clips are read from non-fiction books.
LJ_VOCABULARY = _Vocabulary(
    nouns=_words(
        "printing press paper pages ink workmen city prison prisoners keeper jail chapel court "
        "sheriff magistrates justice debtors felons sentence trial evidence witness report "
        "commission president agents motorcade street window building rifle shots crowd police "
        "officer detective station morning evening night house family friends money debt wages "
        "church market bridge river committee members office records papers answer question "
        "reason purpose matter manner number corridor yard cells wards gate doors walls floor "
        "stairs roof place time work hand side case fact state system practice custom rules "
        "order changes conditions letters books type century"
    ),
    names=_words("Newgate London England America Texas Dallas Washington Oswald Ruby"),
    adjectives=_words(
        "great small large early late long short certain several public private common proper "
        "whole general special careful quiet strong heavy simple plain ancient modern old new"
    ),
    passive=_words(
        "found made given taken brought kept held received described ordered placed examined "
        "observed reported carried followed considered provided required written shown known "
        "seen heard told asked called opened closed"
    ),
    intransitive=_words(
        "remained appeared returned waited continued walked arrived stood lived began"
    ),
)
_TITLED = ("Johnson", "Fry", "Howard", "Smith", "Baker", "Brown", "Connally", "Wilson")

# The newspaper sentences (Herald Glasgow in the real corpus) come from this vocabulary.
NEWS_VOCABULARY = _Vocabulary(
    nouns=_words(
        "council minister party election football club season match team players manager "
        "government police hospital school children families business company jobs workers "
        "money plans report figures week year people service decision support future problem "
        "change city country market price game result board industry staff patients"
    ),
    names=("Scotland", "Glasgow", "Edinburgh", "Celtic", "Rangers", "Aberdeen", "Labour"),
    adjectives=_words(
        "new local national first last major important clear strong good public final "
        "recent serious private young senior"
    ),
    passive=_words(
        "announced expected given made taken shown agreed reported closed opened approved "
        "asked offered needed told"
    ),
    intransitive=_words("improved failed remained returned continued started collapsed won lost"),
)

_ONES = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TENS = _words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")


def _number_words(n: int) -> str:
    """0-9999 the way LJ Speech's normalized column reads them."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {_number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{_ONES[thousands]} thousand" + (f" {_number_words(rest)}" if rest else "")


def _year_words(year: int) -> str:
    """1862 -> eighteen sixty-two, 1805 -> eighteen oh five, 1900 -> nineteen hundred."""
    high, low = divmod(year, 100)
    if low == 0:
        return f"{_number_words(high)} hundred"
    if low < 10:
        return f"{_number_words(high)} oh {_ONES[low]}"
    return f"{_number_words(high)} {_number_words(low)}"


def pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


class _Sentence:
    """A sentence built phrase by phrase, as written and as spoken (LJ's two columns)."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.spoken: list[str] = []

    def add(self, written: str, spoken: str | None = None) -> None:
        self.written.extend(written.split())
        self.spoken.extend((written if spoken is None else spoken).split())

    def comma(self) -> None:
        self.written[-1] += ","
        self.spoken[-1] += ","

    @staticmethod
    def _join(tokens: list[str]) -> str:
        text = " ".join(tokens) + "."
        return text[0].upper() + text[1:]

    @property
    def text(self) -> str:
        return self._join(self.written)

    @property
    def normalized(self) -> str:
        return self._join(self.spoken)

    def words(self) -> tuple[list[str], set[int]]:
        """The spoken words one by one (numbers' hyphens split) and the indices followed by a pause."""
        words: list[str] = []
        pauses: set[int] = set()
        for token in self.spoken:
            words.extend(part.strip(",.;") for part in token.replace("-", " ").split())
            if token.endswith(","):
                pauses.add(len(words) - 1)
        return words, pauses


def _noun_phrase(
    rng: np.random.Generator, sentence: _Sentence, vocab: _Vocabulary, special: bool
) -> None:
    if special:
        if rng.random() < 0.5:
            name = pick(rng, _TITLED)
            sentence.add(f"Mr. {name}", f"Mister {name}")
        else:
            count = int(rng.integers(2, 200))
            noun = pick(rng, ("men", "days", "cells", "pounds", "feet", "years", "letters"))
            sentence.add(f"{count} {noun}", f"{_number_words(count)} {noun}")
        return
    if rng.random() < 0.1:
        sentence.add(pick(rng, vocab.names))
        return
    words = [pick(rng, _DETERMINERS)]
    if rng.random() < 0.35:
        words.append(pick(rng, vocab.adjectives))
    words.append(pick(rng, vocab.nouns))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    sentence.add(" ".join(words))


def _verb_phrase(rng: np.random.Generator, sentence: _Sentence, vocab: _Vocabulary) -> None:
    if rng.random() < 0.7:
        sentence.add(f"{pick(rng, _AUXILIARIES)} {pick(rng, vocab.passive)}")
    else:
        sentence.add(pick(rng, vocab.intransitive))


def make_sentence(
    rng: np.random.Generator,
    vocab: _Vocabulary,
    seconds: float,
    special: bool,
    word_seconds: Callable[[str, np.random.Generator], float],
) -> _Sentence:
    """Clauses and prepositional phrases until the words would take about `seconds` to say.

    With `special`, one number or title goes in ("in 1862", "14 men", "Mr. Fry"), so that the
    written and normalized columns differ as in LJ Speech. `word_seconds(word, rng)` estimates
    how long one spoken word takes (it may draw from `rng`).
    """
    sentence = _Sentence()
    estimate = 0.0
    counted = 0

    def spoken_seconds() -> float:
        nonlocal estimate, counted
        words, _ = sentence.words()
        for word in words[counted:]:
            estimate += word_seconds(word, rng)
        counted = len(words)
        return estimate

    special_left = 1 if special else 0
    relative = False
    while True:
        if not relative:
            use = special_left > 0 and rng.random() < 0.3
            _noun_phrase(rng, sentence, vocab, use)
            special_left -= use
        _verb_phrase(rng, sentence, vocab)
        while spoken_seconds() < seconds and rng.random() < 0.7:
            if special_left > 0 and rng.random() < 0.4:
                year = int(rng.integers(1450, 1965))
                sentence.add(f"in {year}", f"in {_year_words(year)}")
                special_left -= 1
                continue
            sentence.add(pick(rng, _PREPOSITIONS))
            _noun_phrase(rng, sentence, vocab, False)
        if spoken_seconds() >= seconds:
            return sentence
        sentence.comma()
        estimate += 0.25  # the pause at the comma
        joiner = pick(rng, _JOINERS)
        sentence.add(joiner)
        relative = joiner == "which"
