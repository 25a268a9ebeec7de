"""Answer text as FastChat's gen_model_answer leaves it: special-token strings removed, then stripped."""

from segtool.eval import answering, benchmarks
from segtool.inputs.formatting import Encoder
from segtool.models.generation import Generated


def _spelled(tokenizer, text: str) -> list[int]:
    """``text`` as ordinary vocabulary tokens (the tokenizer's model alone, so no added special token matches)."""
    return [t.id for t in tokenizer.backend_tokenizer.model.tokenize(text)]


def test_special_token_strings_spelled_with_ordinary_tokens_are_removed(tiny_tokenizer, monkeypatch):
    tok = tiny_tokenizer
    end, start = _spelled(tok, "<|end_story|>"), _spelled(tok, "<|start_story|>")
    assert len(end) > 1 and tok.eos_token_id not in end  # "<|" "end" "_story" "|>": no special id
    body = tok.encode("The end.", add_special_tokens=False) + end + tok.encode(" Bye", add_special_tokens=False) + start
    assert tok.decode(body, skip_special_tokens=True).count("_story|>") == 2  # skip_special_tokens keeps them
    monkeypatch.setattr("segtool.models.generation.generate",
                        lambda model, prompts, **kw: Generated([body + [tok.eos_token_id]], [False], len(body) + 1))
    settings = answering.Settings(max_new_tokens=64, temperature=0.0, top_p=1.0, seed=0, batch_size=1)
    encoder = Encoder.create(tok, 512, 256)
    [answer] = answering.answer_questions(None, encoder, "alpaca", benchmarks.questions("alpaca", 1), settings, context=512)
    assert answer.turns == ["The end. Bye"]
    assert answer.new_tokens == [len(body)]  # the count is of generated tokens, before the text is cleaned


def test_without_special_strings_covers_every_value_of_the_special_tokens_map():
    class Tokenizer:  # additional_special_tokens is a list in special_tokens_map
        special_tokens_map = {"eos_token": "</s>", "additional_special_tokens": ["<|im_end|>", "<|im_start|>"]}

    assert answering.without_special_strings(" a</s>b<|im_end|> c<|im_start|>\n", Tokenizer()) == "ab c"
