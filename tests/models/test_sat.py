"""models.sat and its character -> token mapping (inputs.offsets): SaT sentences end segments at the
response token holding each sentence's last character. The real SaT model is never run here (its
weights come from the hub): a stand-in splitter cuts after '.', '!' or '?' (``stand_in_sat``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from segtool.errors import ConfigError
from segtool.inputs.formatting import Encoder
from segtool.inputs.offsets import sentence_char_ends, token_ending_at
from segtool.models.sat import load_sat, sat_identity, sentence_end_marks


@pytest.fixture
def split(stand_in_sat):
    """The stand-in splitter: its sentences of each text."""
    return lambda texts: [stand_in_sat.sentences(t) for t in texts]


# -- characters ---------------------------------------------------------------------------------


def test_sentence_ends_leave_trailing_whitespace_out_and_the_last_sentence_to_the_eos_policy(stand_in_sat):
    text = "Hi. How are you? Fine!\nYes."
    assert stand_in_sat.sentences(text) == ["Hi. ", "How are you? ", "Fine!\n", "Yes."]
    assert sentence_char_ends(text, stand_in_sat.sentences(text)) == [3, 16, 22]
    # whitespace after the last sentence does not make it a boundary
    assert sentence_char_ends("A. B.  ", ["A. ", "B.  "]) == [2]
    assert sentence_char_ends("One sentence.", ["One sentence."]) == []


def test_sentences_without_the_newlines_they_were_split_at_are_found_in_order():
    # wtpsplit's default split_on_input_newlines drops the newline it splits at: "".join() is not the text
    text = "Title\n\nBody. More\nEnd"
    assert sentence_char_ends(text, ["Title", "", "Body. ", "More", "End"]) == [5, 12, 17]


@pytest.mark.parametrize("sentences,problem", [
    (["Hi. ", "Bye."], "sentence .Bye.. is not the text after character 3"),  # a sentence the text does not have
    (["Hi. ", "Yes."], "sentence .Yes.. is not the text after character 3"),  # text skipped between two sentences
    (["Hi. ", "How"], "the sentences stop at character 7"),  # text left over
])
def test_sentences_that_are_not_the_text_are_errors(sentences, problem):
    with pytest.raises(ValueError, match=problem):
        sentence_char_ends("Hi. How Yes.", sentences)


def test_token_ending_at_is_the_token_holding_the_previous_character():
    # "Hi." then ". H" spans the boundary; a leading-space token starts at the boundary or later;
    # the three byte tokens of one character share its range, and the last of them ends it.
    offsets = [(0, 0), (0, 2), (2, 5), (5, 7), (7, 8), (7, 8), (7, 8), (8, 12)]
    assert token_ending_at(offsets, 3) == 2  # character 2 is in (2, 5)
    assert token_ending_at(offsets, 8) == 6  # character 7 is in three tokens: the last
    assert token_ending_at(offsets, 7) == 3
    assert token_ending_at([(0, 4), (5, 9)], 5) == 0  # character 4 dropped by the tokenizer: the token before
    assert token_ending_at([(3, 4)], 2) == -1


# -- tokens -------------------------------------------------------------------------------------


def ends_of(marks, n):
    """Segment ends of one response under the default EOS policy, from its sentence marks."""
    return [j for j in range(n - 2) if marks[j]] + [n - 2]


def test_tiny_tokenizer_tokens_spanning_a_boundary_end_the_sentence(tiny_tokenizer, split):
    enc = Encoder.create(tiny_tokenizer, 512, 384)  # plain template: a leading space token (0, 0)
    text = "Hi. How are you? Fine!\nYes."
    ids = enc.encode_response(text, 0)
    pieces = tiny_tokenizer.convert_ids_to_tokens(ids)
    assert pieces[:10] == ["▁", "Hi", ".▁H", "ow", "▁are▁", "you", "?▁", "Fin", "e", "!\n"]  # the vocabulary
    marks = sentence_end_marks(split, enc, [text], [len(ids)])
    # "Hi." ends in ".▁H" (2), "How are you?" in "?▁" (6), "Fine!" in "!\n" (9); "Yes." is the last
    assert np.flatnonzero(marks).tolist() == [2, 6, 9]
    # the max_len cut: 8 response positions kept (7 tokens + EOS); the end at 9 is gone, 6 stays (n - 2)
    cut = enc.encode_response(text, 512 - 8)
    assert len(cut) == 8
    assert np.flatnonzero(sentence_end_marks(split, enc, [text], [8])).tolist() == [2, 6]


def test_byte_level_bpe_multibyte_characters_and_leading_spaces():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["Hello world. How are you? Fine."] * 20, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"],
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    enc = Encoder.create(tok, 512, 64)  # chat template: the response is tokenized as is
    text = "Yes 日本。 Fine. Café!"
    ids = enc.encode_response(text, 0)
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[4:14] == ["æ", "Ĺ", "¥", "æ", "ľ", "¬", "ã", "Ģ", "Ĥ", "ĠFine"]  # 日 本 。 are three bytes each
    marks = sentence_end_marks(lambda texts: [["Yes 日本。 ", "Fine. ", "Café!"] for _ in texts], enc, [text], [len(ids)])
    # "。" ends on its last byte token (12), not on "ĠFine" (13); "Fine." on "." (14)
    assert np.flatnonzero(marks).tolist() == [12, 14]


def test_every_mark_holds_the_last_character_of_its_sentence(tiny_tokenizer, tiny_prefs_path, split, stand_in_sat):
    from segtool.inputs.rows import read_pairs

    enc = Encoder.create(tiny_tokenizer, 512, 384)
    texts = [p.chosen for p in read_pairs(str(tiny_prefs_path), max_rows=40).pairs]
    lengths = [len(enc.encode_response(t, 0)) for t in texts]
    marks = sentence_end_marks(split, enc, texts, lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    checked = 0
    for k, text in enumerate(texts):
        offsets = enc.response_offsets(text)
        expected = []
        for c in sentence_char_ends(text, stand_in_sat.sentences(text)):
            holding = [j for j, (a, b) in enumerate(offsets) if a <= c - 1 < b]
            expected.append(holding[-1])
            assert text[c - 1] in ".!?"
        assert np.flatnonzero(marks[starts[k]:starts[k + 1]]).tolist() == [j for j in expected if j < lengths[k] - 1]
        checked += len(expected)
    assert checked > 40  # the responses have sentences to map


def test_a_splitter_that_loses_texts_is_a_clear_error(tiny_tokenizer):
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    with pytest.raises(ConfigError, match="returned 1 results for 2 texts"):
        sentence_end_marks(lambda texts: [["a."]], enc, ["a.", "b."], [3, 3])
    with pytest.raises(ConfigError, match="do not match the response"):
        sentence_end_marks(lambda texts: [["b."]], enc, ["a."], [3])


# -- loading ------------------------------------------------------------------------------------


def test_missing_wtpsplit_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wtpsplit", None)  # import wtpsplit -> ImportError
    with pytest.raises(ConfigError) as exc:
        load_sat("sat-3l-sm")
    assert exc.value.message == "segment.strategy = 'sat' needs the wtpsplit package"
    assert exc.value.hint == "pip install 'segtool[sat]'"


def test_load_sat_splits_in_one_batch(stand_in_sat, tmp_path):
    split = load_sat("sat-3l-sm")
    assert split(["A b. C d!", "E"]) == [["A b. ", "C d!"], ["E"]]
    load_sat(str(tmp_path))  # a local folder is passed on as a path
    assert stand_in_sat.loaded == ["sat-3l-sm", str(tmp_path)]


def test_sat_identity_is_the_hub_name_or_the_folder_content(tmp_path):
    assert sat_identity("sat-3l-sm") == {"kind": "hub", "id": "segment-any-text/sat-3l-sm"}
    (tmp_path / "config.json").write_text("{}")
    first = sat_identity(str(tmp_path))
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert first["kind"] == "local" and sat_identity(str(tmp_path)) != first


def test_the_real_sat_model_when_it_is_installed_and_reachable():
    """Only where the [sat] extra is installed and the model can be fetched (never in development)."""
    pytest.importorskip("wtpsplit", reason="the [sat] extra (wtpsplit) is not installed")
    try:
        split = load_sat("sat-3l-sm")
    except ConfigError as err:
        pytest.skip(f"the SaT model cannot be loaded here: {err.message}")
    text = "This is a test. This is another sentence!\nAnd a third one"
    (sentences,) = split([text])
    ends = sentence_char_ends(text, sentences)
    assert ends and all(text[end - 1] in ".!" for end in ends)
