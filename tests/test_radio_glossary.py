"""Per-talkgroup glossaries: settings resolution, the prompt text and near-miss correction."""

from __future__ import annotations

from rdio_core.settings import TranscriptionSettings
from rdio_tasks.radio import RadioOptions, clean, correct_near_misses, glossary_prompt

GLOSSARY = ["Medic 12", "Wolcott Street", "Hennepin", "Engine 5", "10-97"]


def test_near_misses_become_the_glossary_term() -> None:
    text, changes = correct_near_misses("Medic 12 responding to Walcott street", GLOSSARY)
    assert text == "Medic 12 responding to Wolcott Street"
    assert changes == [("Walcott street", "Wolcott Street")]
    assert correct_near_misses("north on Hen a pin", GLOSSARY)[0] == "north on Hennepin"


def test_numbers_and_ordinary_words_are_never_corrected() -> None:
    for text in ("Medic 13 on scene", "the wolf caught the street", "Engine 6 copies", "hen and pen"):
        assert correct_near_misses(text, GLOSSARY) == (text, [])


def test_prompt_lists_terms_after_the_calls_own_prompt() -> None:
    assert glossary_prompt(GLOSSARY[:2], "Dispatch.") == "Dispatch. Medic 12, Wolcott Street."
    assert glossary_prompt([" "], None) is None


def test_clean_corrects_after_writing_digits() -> None:
    raw = [{"text": "Medic twelve to Walcott street.", "avg_logprob": -0.3, "no_speech_prob": 0.02}]
    result = clean(raw, RadioOptions(), glossary=GLOSSARY)
    assert result.text == "Medic 12 to Wolcott Street."
    assert result.steps[-2:] == ["digits", "glossary"]
    assert (
        clean(raw, RadioOptions(glossary_correct=False), glossary=GLOSSARY).text
        == "Medic 12 to Walcott street."
    )


def test_glossary_resolves_talkgroup_then_system_then_global() -> None:
    tx = TranscriptionSettings(
        glossary=["Station 4"],
        systems=[
            {"id": 1, "glossary": ["Medic 12"], "talkgroups": [{"id": 7, "glossary": ["Hennepin", " "]}]},
            {"id": 2},
        ],
    )
    assert tx.resolve(1, 7).glossary == ("Hennepin",)
    assert tx.resolve(1, 8).glossary == ("Medic 12",)
    assert tx.resolve(2, 1).glossary == ("Station 4",)
    assert TranscriptionSettings().resolve(1, 1).glossary == ()
