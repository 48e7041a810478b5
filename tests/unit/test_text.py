"""The text front end: what is said for what is written, symbol ids, dropped characters, and
text with nothing to say."""

from __future__ import annotations

import pytest

from wavefoundry.text import SymbolTable, TextError, normalize, split_sentences

EXPANSIONS = [
    ("There were 14 men.", "there were fourteen men."),
    ("It cost 123 pounds.", "it cost one hundred and twenty-three pounds."),
    ("1,250 prisoners", "one thousand two hundred and fifty prisoners"),
    ("in 1862", "in eighteen sixty-two"),
    ("in 1805", "in eighteen oh five"),
    ("in 1900", "in nineteen hundred"),
    ("in 2005", "in two thousand five"),
    ("the 2nd of May", "the second of may"),
    ("the 21st century", "the twenty-first century"),
    ("his 103rd birthday", "his one hundred and third birthday"),
    ("$3.50", "three dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$0.05", "five cents"),
    ("£2.01", "two pounds and one penny"),
    ("$1,000,000", "one million dollars"),
    ("3.14", "three point one four"),
    ("50% & more", "fifty percent and more"),
    ("Mr. Fry and Mrs. Smith", "mister fry and missus smith"),
    ("Dr. Howard of St. Paul", "doctor howard of saint paul"),
    ("Lt. Col. Baker, Jr.", "lieutenant colonel baker, junior"),
    ("Café naïve", "cafe naive"),
    ("  many   spaces\tand\nlines ", "many spaces and lines"),
]


@pytest.mark.parametrize(("written", "said"), EXPANSIONS)
def test_expansions(written: str, said: str) -> None:
    assert normalize(written) == said


def test_the_same_text_always_gives_the_same_ids() -> None:
    table = SymbolTable()
    first = table.encode("Mr. Fry paid $3.50 in 1862!")
    again = SymbolTable.from_json(table.to_json()).encode("Mr. Fry paid $3.50 in 1862!")
    assert first.ids == again.ids
    assert first.ids[-1] == 1  # EOS
    assert 0 not in first.ids  # padding never inside a sentence
    assert table.decode(first.ids) == first.text
    assert first.text == "mister fry paid three dollars and fifty cents in eighteen sixty-two!"


def test_ids_come_from_the_stored_table_not_the_current_defaults() -> None:
    """A model keeps its table: a reordered table gives other ids for the same text."""
    stored = SymbolTable(("_", "~", " ", *"zyxwvutsrqponmlkjihgfedcba", ".", ","))
    assert stored.encode("abc.").ids == [28, 27, 26, 29, 1]
    assert SymbolTable().encode("abc.").ids != stored.encode("abc.").ids


def test_unknown_characters_are_dropped_and_reported() -> None:
    encoded = SymbolTable().encode('He said [sic] {twice} "yes" #1 <b>')
    assert encoded.text == "he said sic twice yes one b"
    assert encoded.dropped == ('"', "#", "<", ">", "[", "]", "{", "}")


def test_symbols_ascii_folding_cannot_spell_are_reported_not_lost() -> None:
    """unidecode has no spelling for a snowman or an emoji: they vanished unreported. Letters
    it folds (é, an accent as a combining mark) and a no-break space are spoken, not dropped."""
    encoded = SymbolTable().encode("Caf\u00e9 \u2603 and cafe\u0301\u00a0now \U0001f600")
    assert encoded.text == "cafe and cafe now"
    assert encoded.dropped == ("\u2603", "\U0001f600")
    with pytest.raises(TextError, match="dropped: \u2603"):
        SymbolTable().encode("\u2603")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "nothing speakable"),
        ("   ", "nothing speakable"),
        ("?!...", "nothing speakable"),
        ("[]{}", "nothing speakable"),
        ("hello\x00world", "control characters (U+0000)"),
        ("bell\x07", "control characters (U+0007)"),
    ],
)
def test_unspeakable_text_is_one_clear_error(text: str, reason: str) -> None:
    with pytest.raises(TextError, match=r"^[^\n]+$") as caught:
        SymbolTable().encode(text)
    assert reason in str(caught.value)


def test_numbers_alone_are_speakable() -> None:
    assert SymbolTable().encode("42").text == "forty-two"


def test_long_text_is_split_at_sentence_ends() -> None:
    text = "The first sentence. The second one! A third? And the rest"
    assert split_sentences(text, 100) == [
        "The first sentence.",
        "The second one!",
        "A third?",
        "And the rest",
    ]
    long = "one, two three four five six seven eight nine ten"
    pieces = split_sentences(long, 20)
    assert all(len(p) <= 20 for p in pieces)
    assert " ".join(pieces).replace(", ", " ") == long.replace(",", "")
    assert split_sentences("3.5 is a number. Yes.", 100) == ["3.5 is a number.", "Yes."]
