"""The gold reward of generated answers: decoded as a judge reads them, then the gold scorer."""

from transformers import AutoTokenizer

from segtool.credit.sources import gold_scorer
from segtool.pipeline.policy_eval import gold_rewards


def test_gold_rewards_read_the_text_without_special_tokens_or_their_spelled_out_strings(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    finished = tok("Tom had a red ball. He liked it a lot.", add_special_tokens=False).input_ids
    repeated = tok("Tom had a red ball. Tom had a red ball.", add_special_tokens=False).input_ids
    cut = tok("Tom had a red ball. He liked", add_special_tokens=False).input_ids
    spelled = tok("Tom had a red ball.<|end_story|>", add_special_tokens=False).input_ids  # the marker as text pieces
    eos = [tok.eos_token_id]
    # finished: 0 defects; repeated sentence: 1; unfinished ending: 1; the spelled-out end marker is no
    # unfinished sentence once removed, and the EOS token is skipped.
    assert gold_rewards(gold_scorer(), tok, [finished + eos, repeated + eos, cut, spelled + eos]) == [0.0, -1.0, -1.0, 0.0]
