"""segtool.inputs.formatting.Encoder (METHOD §1) on the real TinyStories-656K tokenizer.

Token ids below were read off the embedded tokenizer (SentencePiece-style Llama tokenizer, Metaspace
pre-tokenizer with prepend_scheme=first; bos <|start_story|> = 1, eos <|end_story|> = 2):

    "\\n\\nHuman: hi there\\n\\nAssistant:" with special tokens (20 ids)
        [1, 80, 3, 3, 33, 359, 116, 21, 141, 2024, 249, 57, 3, 3, 26, 71, 601, 114, 1568, 21]
         BOS '▁' '\\n' '\\n' 'H' 'um' 'an' ':' '▁h' 'i▁' 'ther' 'e' '\\n' '\\n' 'A' 's' 'si' 'st' 'ant' ':'
    " Hello world." without special tokens (6 ids)
        [80, 1288, 139, 410, 555, 10]      '▁' 'Hell' 'o▁' 'wor' 'ld' '.'

Every truncation golden below is derived by hand from these two lists.
"""

from __future__ import annotations

import copy

import pytest

from segtool.errors import ConfigError
from segtool.inputs.formatting import Encoder

BOS, EOS = 1, 2
HI = ({"role": "user", "content": "hi there"},)
PLAIN_HI = "\n\nHuman: hi there\n\nAssistant:"
PROMPT_IDS = [1, 80, 3, 3, 33, 359, 116, 21, 141, 2024, 249, 57, 3, 3, 26, 71, 601, 114, 1568, 21]
HELLO = "Hello world."
HELLO_IDS = [80, 1288, 139, 410, 555, 10]  # tokens of " Hello world."

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = CHATML
    return tok


def test_tokenizer_pins(tiny_tokenizer):
    """The goldens in this file assume exactly this tokenizer."""
    assert (tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id) == (BOS, EOS)
    assert tiny_tokenizer.eos_token == "<|end_story|>"
    assert not getattr(tiny_tokenizer, "chat_template", None)
    assert tiny_tokenizer(PLAIN_HI).input_ids == PROMPT_IDS
    assert tiny_tokenizer(" " + HELLO, add_special_tokens=False).input_ids == HELLO_IDS


# --------------------------------------------------------------------------------------------
# plain template (no chat template)


def test_plain_prompt_single_turn(tiny_tokenizer):
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    assert enc.use_chat_template is False
    assert enc.eos_id == EOS
    ids = enc.encode_prompt(HI)
    assert ids == PROMPT_IDS
    assert ids[0] == BOS  # BOS prepended
    assert tiny_tokenizer.decode(ids[1:]) == "\n\nHuman: hi there\n\nAssistant:"


def test_plain_prompt_multi_turn_with_system(tiny_tokenizer):
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye?"},
    ]
    ids = enc.encode_prompt(messages)
    assert ids[0] == BOS
    assert tiny_tokenizer.decode(ids[1:]) == "\n\nSystem: Be brief.\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye?\n\nAssistant:"
    assert len(ids) == 49
    # a tuple of messages (as in Pair.prompt) gives the same ids as a list
    assert enc.encode_prompt(tuple(messages)) == ids


def test_plain_response_is_space_plus_text_plus_eos(tiny_tokenizer):
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    assert enc.encode_response(HELLO, len(PROMPT_IDS)) == HELLO_IDS + [EOS]
    # the space is really prepended: a response that itself starts with a space gets two
    # ("  Hello" -> '▁' '▁' 'Hell' 'o')
    assert enc.encode_response(" Hello", 20) == [80, 80, 1288, 67, EOS]
    assert enc.encode_response(" Hello", 20) == tiny_tokenizer("  Hello", add_special_tokens=False).input_ids + [EOS]
    # decoding prompt + response gives the transcript with exactly one space after "Assistant:"
    assert tiny_tokenizer.decode(PROMPT_IDS[1:] + HELLO_IDS) == "\n\nHuman: hi there\n\nAssistant: Hello world."


# --------------------------------------------------------------------------------------------
# truncation (hand-derived from PROMPT_IDS and HELLO_IDS + [EOS], which has 7 ids)

TRUNCATION_CASES = [
    # (max_len, max_prompt_len, expected prompt, expected response)
    # prompt fits: unchanged, budget 512 - 20
    (512, 384, PROMPT_IDS, HELLO_IDS + [EOS]),
    # prompt keeps its right end: the last 8 ids are "\n\nAssistant:"; budget 16 - 8 = 8 >= 7: natural EOS
    (16, 8, [3, 3, 26, 71, 601, 114, 1568, 21], [80, 1288, 139, 410, 555, 10, EOS]),
    # budget 15 - 8 = 7: exactly fits, natural EOS kept
    (15, 8, [3, 3, 26, 71, 601, 114, 1568, 21], [80, 1288, 139, 410, 555, 10, EOS]),
    # budget 14 - 8 = 6: keep [80 1288 139 410 555 10] (EOS cut away), the last ('.') becomes EOS
    (14, 8, [3, 3, 26, 71, 601, 114, 1568, 21], [80, 1288, 139, 410, 555, EOS]),
    # budget 12 - 8 = 4: keep [80 1288 139 410], last ('wor') becomes EOS
    (12, 8, [3, 3, 26, 71, 601, 114, 1568, 21], [80, 1288, 139, EOS]),
    # budget 10 - 8 = 2: the minimum, one token plus EOS
    (10, 8, [3, 3, 26, 71, 601, 114, 1568, 21], [80, EOS]),
    # max_prompt_len 19 drops exactly the BOS
    (40, 19, PROMPT_IDS[1:], HELLO_IDS + [EOS]),
    # max_prompt_len 20 == prompt length: BOS kept
    (40, 20, PROMPT_IDS, HELLO_IDS + [EOS]),
    # the response budget uses the real prompt length (20), not max_prompt_len (22): 24 - 20 = 4
    (24, 22, PROMPT_IDS, [80, 1288, 139, EOS]),
]


@pytest.mark.parametrize("max_len, max_prompt_len, prompt, response", TRUNCATION_CASES)
def test_truncation_goldens(tiny_tokenizer, max_len, max_prompt_len, prompt, response):
    enc = Encoder.create(tiny_tokenizer, max_len, max_prompt_len)
    got_prompt = enc.encode_prompt(HI)
    assert got_prompt == prompt
    assert got_prompt == PROMPT_IDS[-max_prompt_len:]
    got_response = enc.encode_response(HELLO, len(got_prompt))
    assert got_response == response
    assert got_response[-1] == EOS
    assert len(got_prompt) + len(got_response) <= max_len
    assert enc.encode(HI, HELLO) == (got_prompt, got_response)


def test_truncated_prompt_decodes_to_its_right_end(tiny_tokenizer):
    enc = Encoder.create(tiny_tokenizer, 16, 8)
    assert tiny_tokenizer.decode(enc.encode_prompt(HI)) == "\n\nAssistant:"


def test_natural_eos_is_the_only_eos_when_response_fits(tiny_tokenizer):
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    ids = enc.encode_response("The cat sat.", 20)
    assert ids == [80, 247, 411, 107, 72, 10, EOS]
    assert ids.count(EOS) == 1


# --------------------------------------------------------------------------------------------
# chat template path


def test_chat_template_prompt(chat_tokenizer):
    enc = Encoder.create(chat_tokenizer, 512, 384)
    assert enc.use_chat_template is True
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    text = chat_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    expected = chat_tokenizer(text, add_special_tokens=False).input_ids
    assert enc.encode_prompt(messages) == expected
    assert expected[0] != BOS  # the template decides special tokens; none are added
    # chat path: the response is not prefixed with a space
    assert enc.encode_response(" Hello", len(expected)) == chat_tokenizer(" Hello", add_special_tokens=False).input_ids + [EOS]
    assert enc.encode_response(" Hello", len(expected)) == [80, 1288, 67, EOS]
    assert enc.encode(messages, HELLO) == (expected, enc.encode_response(HELLO, len(expected)))


def test_chat_template_prompt_truncation_keeps_right_end(chat_tokenizer):
    full = Encoder.create(chat_tokenizer, 512, 384).encode_prompt(HI)
    short = Encoder.create(chat_tokenizer, 14, 10).encode_prompt(HI)
    assert short == full[-10:]
    assert chat_tokenizer.decode(short).endswith("assistant\n")


def test_template_plain_forces_plain_path(chat_tokenizer, tiny_tokenizer):
    enc = Encoder.create(chat_tokenizer, 512, 384, template="plain")
    assert enc.use_chat_template is False
    assert enc.encode_prompt(HI) == PROMPT_IDS
    assert enc.encode_response(HELLO, 20) == HELLO_IDS + [EOS]
    # and "auto" on a tokenizer without a template is plain too
    assert Encoder.create(tiny_tokenizer, 512, 384, template="auto").use_chat_template is False


def test_tokenizer_without_eos_is_config_error(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.eos_token = None
    assert tok.eos_token_id is None
    with pytest.raises(ConfigError) as exc:
        Encoder.create(tok, 512, 384)
    assert exc.value.message == "the tokenizer has no EOS token"
    assert exc.value.hint


# --------------------------------------------------------------------------------------------
# METHOD §1: prompt tokens are identical across stages


def test_prompt_tokens_identical_across_stages(tiny_tokenizer, tiny_prefs_path):
    """Every stage must tokenize a prompt through the same function.

    Today `segment` is the only stage: it encodes the prompt once per pair (encode_prompt) and
    each side with encode_response. Later stages (train-rm, fit-normalizer, ppo, eval) must add
    their own entry point to this test, each compared with `encode_prompt(pair.prompt)`.
    """
    from segtool.config.loader import load_config
    from segtool.inputs.rows import read_pairs
    from segtool.models.segmentation import encode_pairs

    cfg, _ = load_config("tiny")
    enc = Encoder.create(tiny_tokenizer, cfg.tokenize.max_len, cfg.tokenize.max_prompt_len, cfg.tokenize.template)
    pairs = read_pairs(str(tiny_prefs_path)).pairs
    assert len(pairs) == 320
    by_row = {}
    for seq in encode_pairs(pairs, enc):  # the segment stage's own entry point
        by_row.setdefault(seq.row_id, {})[seq.side] = seq.prompt
    for pair in pairs:
        prompt = enc.encode_prompt(pair.prompt)
        assert enc.encode(pair.prompt, pair.chosen)[0] == prompt
        assert enc.encode(pair.prompt, pair.rejected)[0] == prompt
        assert by_row[pair.row_id] == {"chosen": prompt, "rejected": prompt}
        assert 0 < len(prompt) <= cfg.tokenize.max_prompt_len
    assert len(by_row) == 320


# --------------------------------------------------------------------------------------------
# character offsets of response tokens (credit benchmark spans)


def test_response_offsets_are_those_of_encode_response(tiny_tokenizer):
    """' Hello world.' -> '▁' 'Hell' 'o▁' 'wor' 'ld' '.': the leading space of the plain transcript
    belongs to no character of the response, so the '▁' token is the empty range (0, 0)."""
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    assert enc.encode_response(HELLO, 0)[:-1] == HELLO_IDS
    assert enc.response_offsets(HELLO) == [(0, 0), (0, 4), (4, 6), (6, 9), (9, 11), (11, 12)]


@pytest.mark.parametrize(("span", "tokens"), [((0, 5), (1, 3)), ((6, 11), (3, 5)), ((11, 12), (5, 6)), ((4, 5), (2, 3))])
def test_token_span_is_the_tokens_overlapping_the_characters(tiny_tokenizer, span, tokens):
    # "Hello" = 'Hell' 'o▁' (1, 2); "world" = 'wor' 'ld' (3, 4); "." = 5; "o" alone = 'o▁' (2)
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    assert enc.token_span(HELLO, span) == tokens


def test_token_span_with_a_chat_template_has_no_prefix_space(chat_tokenizer):
    enc = Encoder.create(chat_tokenizer, 512, 384)
    text = "Lily was not happy."
    ids = enc.encode_response(text, 0)[:-1]
    offsets = enc.response_offsets(text)
    assert len(offsets) == len(ids)
    start, end = enc.token_span(text, (9, 12))  # "not"
    assert "not" in chat_tokenizer.decode(ids[start:end])
    assert all(b <= 9 for _, b in offsets[:start]) and all(a >= 12 for a, _ in offsets[end:])


def test_offsets_skip_characters_the_tokenizer_drops(tiny_tokenizer):
    """The tiny tokenizer has no token for '=' (nor a byte token): it vanishes, and the fast
    tokenizer's own offset mapping puts every later token one character early."""
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    text = "So 3 + 4 = 7 eggs and 2 = 2."
    ids = enc.encode_response(text, 0)[:-1]
    offsets = enc.response_offsets(text)
    assert len(offsets) == len(ids)
    seven = text.index("7")
    start, end = enc.token_span(text, (seven, seven + 1))
    assert tiny_tokenizer.decode(ids[start:end]).strip() == "7"
    eggs = text.index("eggs")
    start, end = enc.token_span(text, (eggs, eggs + 4))
    assert "eggs" in tiny_tokenizer.decode(ids[start:end])
    equals = text.index("=")
    assert enc.token_span(text, (equals, equals + 1)) is None  # no token carries it: the model never sees it
    for (a, b), token in zip(offsets, ids):  # every token's characters are its own text
        piece = tiny_tokenizer.convert_ids_to_tokens(token).replace("\u2581", " ")
        assert text[a:b].strip() in piece


def test_slow_tokenizers_get_the_same_offsets_by_alignment(tiny_tokenizer, monkeypatch):
    enc = Encoder.create(tiny_tokenizer, 512, 384)
    text = "Lily said, \"Hello world!\" and ran home."
    fast = enc.response_offsets(text)
    monkeypatch.setattr(type(tiny_tokenizer), "is_fast", property(lambda self: False))
    assert enc.response_offsets(text) == fast
