"""segtool.inputs.rows: preference rows -> Pair, with row-level validation (METHOD §1)."""

from __future__ import annotations

import pytest

from segtool.errors import InputError
from segtool.inputs.rows import Pair, RowError, parse_pair, read_pairs

WHERE = "prefs.jsonl line 7"
SKIP = "or pass --skip-invalid to skip and count such rows"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def row_error(data, fmt="auto") -> RowError:
    with pytest.raises(RowError) as exc:
        parse_pair(3, data, WHERE, fmt)
    assert isinstance(exc.value, InputError)
    assert exc.value.hint.endswith(SKIP)
    return exc.value


# --------------------------------------------------------------------------------------------
# accepted shapes


def test_string_prompt():
    pair = parse_pair(3, {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "extra": 1}, WHERE)
    assert pair == Pair(row_id=3, prompt=(user("What is 2+2?"),), chosen="4", rejected="5")


def test_chat_message_prompt_keeps_roles_and_drops_extra_keys():
    prompt = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "bob"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye?"},
    ]
    pair = parse_pair(0, {"prompt": prompt, "chosen": "Bye.", "rejected": "No."}, WHERE)
    assert pair.prompt == ({"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello."), user("Bye?"))
    assert (pair.chosen, pair.rejected) == ("Bye.", "No.")


def test_response_strings_are_kept_verbatim_in_pairs_format():
    pair = parse_pair(0, {"prompt": "p", "chosen": " a b \n", "rejected": "c"}, WHERE)
    assert pair.chosen == " a b \n"


def test_message_list_responses_take_prompt_from_context():
    data = {
        "chosen": [user("Q1"), assistant("A1"), user("Q2"), assistant("good")],
        "rejected": [user("Q1"), assistant("A1"), user("Q2"), assistant("bad")],
    }
    pair = parse_pair(5, data, WHERE)
    assert pair == Pair(5, (user("Q1"), assistant("A1"), user("Q2")), "good", "bad")


def test_explicit_prompt_wins_over_message_context():
    data = {"prompt": "P", "chosen": [user("other"), assistant("good")], "rejected": [assistant("bad")]}
    assert parse_pair(0, data, WHERE) == Pair(0, (user("P"),), "good", "bad")


def test_hh_single_turn():
    data = {
        "chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.",
        "rejected": "\n\nHuman: Name a colour.\n\nAssistant:   Seven.  ",
    }
    # the response is everything after the last "\n\nAssistant:", stripped
    assert parse_pair(1, data, WHERE) == Pair(1, (user("Name a colour."),), "Blue.", "Seven.")


def test_hh_multi_turn_split_at_last_assistant():
    shared = (
        "\n\nHuman: What is a cat?"
        "\n\nAssistant: A small animal."
        "\n\nHuman: Is it a pet? Say 'Assistant:' if so."
    )
    data = {
        "chosen": shared + "\n\nAssistant: Yes, often. Assistant: done.",
        "rejected": shared + "\n\nAssistant: No.",
    }
    pair = parse_pair(2, data, WHERE)
    assert pair.prompt == (
        {"role": "user", "content": "What is a cat?"},
        {"role": "assistant", "content": "A small animal."},
        {"role": "user", "content": "Is it a pet? Say 'Assistant:' if so."},
    )
    # "Assistant:" without the blank line before it is text, not a turn
    assert pair.chosen == "Yes, often. Assistant: done."
    assert pair.rejected == "No."


def test_hh_preamble_becomes_system_message():
    data = {
        "chosen": "You are kind.\n\nHuman: Hi\n\nAssistant: Hello!",
        "rejected": "You are kind.\n\nHuman: Hi\n\nAssistant: What?",
    }
    pair = parse_pair(0, data, WHERE)
    assert pair.prompt == ({"role": "system", "content": "You are kind."}, user("Hi"))


def test_hh_forced_format_and_pairs_forced_format():
    hh = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: What?"}
    assert parse_pair(0, hh, WHERE, "hh").prompt == (user("Hi"),)
    # forcing "pairs" on an HH row: no prompt field
    err = row_error(hh, "pairs")
    assert err.field == "prompt"
    assert err.message == f"{WHERE}: field 'prompt' is missing"


def test_bundled_hh_data_parses_completely(tiny_prefs_path):
    report = read_pairs(str(tiny_prefs_path))
    assert len(report.pairs) == 320 and report.invalid == []
    assert [p.row_id for p in report.pairs] == list(range(320))
    assert all(p.prompt[-1]["role"] == "user" for p in report.pairs)
    first = report.pairs[0]
    assert first.prompt == (user("Do you know why turkeys became the official food of thanksgiving?"),)
    assert first.chosen.startswith("To be honest, I don’t know anything about that.")


# --------------------------------------------------------------------------------------------
# rejected rows: the message names the row location and the field


def test_hh_rows_with_different_prompts():
    data = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!",
        "rejected": "\n\nHuman: Hey\n\nAssistant: What?",
    }
    err = row_error(data)
    assert err.field == "rejected"
    assert err.message == f"{WHERE}: field 'rejected' has a different conversation before its last answer than 'chosen'"


def test_message_list_rows_with_different_contexts():
    data = {"chosen": [user("Q1"), assistant("good")], "rejected": [user("Q2"), assistant("bad")]}
    err = row_error(data)
    assert err.field == "rejected"
    assert "different conversation" in err.message


def test_hh_rejected_without_assistant_turn():
    err = row_error({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi"})
    assert err.field == "rejected"
    assert err.message == f"{WHERE}: field 'rejected' has no '\\n\\nAssistant:' turn"


@pytest.mark.parametrize("chosen", ["\n\nHuman: Hi\n\nHuman: Hello?", "Human: Hi", "\n\nHuman: Hi Assistant: Hello!"])
def test_hh_transcript_without_assistant_turn_says_so(chosen):
    err = row_error({"chosen": chosen, "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."})
    assert err.field == "chosen"
    assert err.message == f"{WHERE}: field 'chosen' has no '\\n\\nAssistant:' turn"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"prompt": "a", "chosen": "b\ud800", "rejected": "c"}, "chosen"),
        ({"prompt": "a", "chosen": "b", "rejected": "\udfffc"}, "rejected"),
        ({"prompt": "a\udc00", "chosen": "b", "rejected": "c"}, "prompt"),
        ({"prompt": [user("x"), assistant("y"), user("a\ud800")], "chosen": "b", "rejected": "c"}, "prompt[2]"),
        ({"chosen": [user("a\ud800"), assistant("b")], "rejected": [user("a\ud800"), assistant("c")]}, "chosen[0]"),
        ({"chosen": "\n\nHuman: a\ud800\n\nAssistant: b", "rejected": "\n\nHuman: a\ud800\n\nAssistant: c"}, "chosen"),
    ],
)
def test_lone_surrogate_is_a_row_error(data, field):
    err = row_error(data)
    assert err.field == field
    assert f"field '{field}' contains a lone UTF-16 surrogate (\\u" in err.message


def test_hh_prompt_must_end_with_human_turn():
    data = {
        "chosen": "\n\nHuman: a\n\nAssistant: b\n\nAssistant: c",
        "rejected": "\n\nHuman: a\n\nAssistant: b\n\nAssistant: d",
    }
    err = row_error(data)
    assert err.field == "chosen"
    assert "no Human turn" in err.message


@pytest.mark.parametrize(
    "data, field",
    [
        ({"prompt": "p", "chosen": "c"}, "rejected"),
        ({"prompt": "p", "rejected": "r"}, "chosen"),
        ({"prompt": "p", "chosen": None, "rejected": "r"}, "chosen"),
        ({"chosen": "c", "rejected": "r"}, "prompt"),
        ({"prompt": None, "chosen": "c", "rejected": "r"}, "prompt"),
        ({}, "chosen"),
    ],
)
def test_missing_field(data, field):
    err = row_error(data)
    assert err.field == field
    assert err.message == f"{WHERE}: field '{field}' is missing"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"prompt": "p", "chosen": "", "rejected": "r"}, "chosen"),
        ({"prompt": "p", "chosen": "c", "rejected": " \n\t "}, "rejected"),
        ({"prompt": "p", "chosen": [assistant("  ")], "rejected": "r"}, "chosen"),
        ({"chosen": "\n\nHuman: a\n\nAssistant:   ", "rejected": "\n\nHuman: a\n\nAssistant: b"}, "chosen"),
    ],
)
def test_empty_response(data, field):
    err = row_error(data)
    assert err.field == field
    assert err.message == f"{WHERE}: field '{field}' is an empty response"


@pytest.mark.parametrize(
    "data",
    [
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        {"chosen": "\n\nHuman: a\n\nAssistant: same", "rejected": "\n\nHuman: a\n\nAssistant:  same "},
        {"chosen": [user("q"), assistant("same")], "rejected": [user("q"), assistant("same")]},
    ],
)
def test_chosen_equals_rejected(data):
    err = row_error(data)
    assert err.field == "rejected"
    assert err.message == f"{WHERE}: field 'rejected' is identical to 'chosen'"


@pytest.mark.parametrize(
    "data, field, problem",
    [
        ({"prompt": "p", "chosen": 5, "rejected": "r"}, "chosen", "must be a string, got int"),
        ({"prompt": "p", "chosen": "c", "rejected": {"text": "r"}}, "rejected", "must be a string, got dict"),
        ({"prompt": 5, "chosen": "c", "rejected": "r"}, "prompt", "must be a string or a non-empty list of chat messages"),
        ({"prompt": [], "chosen": "c", "rejected": "r"}, "prompt", "must be a string or a non-empty list of chat messages"),
        ({"prompt": ["hi"], "chosen": "c", "rejected": "r"}, "prompt[0]", "is not a chat message"),
        ({"prompt": [user("a"), {"role": "bot", "content": "b"}], "chosen": "c", "rejected": "r"}, "prompt[1]", "is not a chat message"),
        ({"prompt": [{"role": "user", "content": 3}], "chosen": "c", "rejected": "r"}, "prompt[0]", "is not a chat message"),
        ({"prompt": "p", "chosen": [user("a")], "rejected": "r"}, "chosen", "does not end with an assistant message"),
        ({"prompt": "p", "chosen": [], "rejected": "r"}, "chosen", "must be a string or a non-empty list of chat messages"),
    ],
)
def test_wrong_types(data, field, problem):
    err = row_error(data)
    assert err.field == field
    assert err.message == f"{WHERE}: field '{field}' {problem}"


def test_hh_forced_with_non_string_transcript():
    err = row_error({"chosen": [assistant("a")], "rejected": "\n\nHuman: a\n\nAssistant: b"}, "hh")
    assert err.field == "chosen"
    assert err.message == f"{WHERE}: field 'chosen' must be a string transcript, got list"


@pytest.mark.parametrize(
    "data",
    [
        {"prompt": [user("a"), assistant("b")], "chosen": "c", "rejected": "d"},
        {"chosen": [user("a"), assistant("b"), assistant("c")], "rejected": [user("a"), assistant("b"), assistant("d")]},
    ],
)
def test_pairs_prompt_must_end_with_user_message(data):
    with pytest.raises(RowError):
        parse_pair(0, data, WHERE)


# --------------------------------------------------------------------------------------------
# read_pairs: fail fast, or skip and count


GOOD_A = {"prompt": "a", "chosen": "b", "rejected": "c"}
GOOD_B = {"prompt": "d", "chosen": "e", "rejected": "f"}


@pytest.fixture
def mixed_file(tmp_path, write_jsonl):
    # line: 1 good (row 0) | 2 missing 'rejected' (row 1) | 3 blank | 4 malformed (row 2)
    #       5 empty chosen (row 3) | 6 good (row 4) | 7 chosen == rejected (row 5)
    return write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            GOOD_A,
            {"prompt": "x", "chosen": "y"},
            "",
            "{not json",
            {"prompt": "x", "chosen": " ", "rejected": "z"},
            GOOD_B,
            {"prompt": "x", "chosen": "same", "rejected": "same"},
        ],
    )


def test_read_pairs_raises_on_first_bad_row(mixed_file):
    with pytest.raises(RowError) as exc:
        read_pairs(str(mixed_file))
    assert exc.value.message == f"{mixed_file} line 2: field 'rejected' is missing"


def test_read_pairs_skip_invalid_counts_and_keeps_valid(mixed_file):
    report = read_pairs(str(mixed_file), skip_invalid=True)
    assert report.pairs == [Pair(0, (user("a"),), "b", "c"), Pair(4, (user("d"),), "e", "f")]
    assert len(report.invalid) == 4
    assert [e.message.split(":")[0] for e in report.invalid] == [
        f"{mixed_file} line 2",
        f"{mixed_file} line 4",
        f"{mixed_file} line 5",
        f"{mixed_file} line 7",
    ]
    assert "malformed JSON" in report.invalid[1].message
    assert [getattr(e, "field", None) for e in report.invalid] == ["rejected", None, "chosen", "rejected"]


def test_read_pairs_max_rows_counts_every_record(mixed_file):
    # rows 0..2 only: good, missing field, malformed -> one pair, two skipped
    report = read_pairs(str(mixed_file), max_rows=3, skip_invalid=True)
    assert [p.row_id for p in report.pairs] == [0]
    assert len(report.invalid) == 2
    # max_rows=1 never reaches the bad rows, so no error even without skip_invalid
    assert read_pairs(str(mixed_file), max_rows=1).pairs == [Pair(0, (user("a"),), "b", "c")]


def test_read_pairs_max_rows_on_bundled_data(tiny_prefs_path):
    report = read_pairs(str(tiny_prefs_path), max_rows=7)
    assert [p.row_id for p in report.pairs] == list(range(7))


def test_read_pairs_no_valid_rows(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "b"}, "[]"])
    with pytest.raises(InputError) as exc:
        read_pairs(str(path), skip_invalid=True)
    assert exc.value.message == (f"{path}: no valid preference rows (2 invalid rows skipped, the first: "
                                 f"{path} line 1: field 'rejected' is identical to 'chosen')")


def test_read_pairs_empty_file(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(InputError, match="no valid preference rows"):
        read_pairs(str(path))


def test_read_pairs_format_override(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}])
    assert read_pairs(str(path), fmt="hh").pairs == [Pair(0, (user("a"),), "b", "c")]
    with pytest.raises(RowError, match="field 'prompt' is missing"):
        read_pairs(str(path), fmt="pairs")
