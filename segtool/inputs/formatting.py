"""The one formatting/tokenization function every stage uses (METHOD §1).

Prompt: the tokenizer's chat template with the generation prompt when it has one, else a plain
"\\n\\nHuman: ...\\n\\nAssistant:" transcript. Response: its tokens plus EOS. Truncation keeps the
right end of the prompt (max_prompt_len), then cuts the response to fit max_len; if that cut the
EOS away, the last kept token becomes EOS. Because RM training, calibration, PPO and eval all call
``encode_prompt``, prompt tokens are identical across stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from segtool.errors import ConfigError
from segtool.inputs.offsets import token_offsets

PLAIN_ROLES = {"system": "System", "user": "Human", "assistant": "Assistant"}


@dataclass(frozen=True)
class Encoder:
    tokenizer: object
    max_len: int
    max_prompt_len: int
    use_chat_template: bool

    @classmethod
    def create(cls, tokenizer, max_len: int, max_prompt_len: int, template: str = "auto") -> Encoder:
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no EOS token", "use a tokenizer with eos_token set")
        use_chat = template == "auto" and bool(getattr(tokenizer, "chat_template", None))
        return cls(tokenizer, max_len, max_prompt_len, use_chat)

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    def encode_prompt(self, messages) -> list[int]:
        messages = [dict(m) for m in messages]
        if self.use_chat_template:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        else:
            text = "".join(f"\n\n{PLAIN_ROLES[m['role']]}: {m['content']}" for m in messages) + "\n\nAssistant:"
            ids = self.tokenizer(text, add_special_tokens=True).input_ids
        return ids[-self.max_prompt_len :]

    def response_text(self, text: str) -> str:
        """The text a response's ids are tokenized from: ``text`` ends it (character offsets shift by
        len(response_text(text)) - len(text))."""
        return text if self.use_chat_template else " " + text  # the plain transcript puts one space after "Assistant:"

    def encode_response(self, text: str, prompt_len: int) -> list[int]:
        ids = self.tokenizer(self.response_text(text), add_special_tokens=False).input_ids + [self.eos_id]
        ids = ids[: self.max_len - prompt_len]
        ids[-1] = self.eos_id
        return ids

    def response_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character range in ``text`` of each response token ``encode_response`` makes (EOS and the
        max_len cut aside); a token of the plain transcript's leading space is the range (0, 0)."""
        fed = self.response_text(text)
        shift = len(fed) - len(text)
        _, offsets = token_offsets(self.tokenizer, fed)
        return [(max(a - shift, 0), max(b - shift, 0)) for a, b in offsets]

    def token_span(self, text: str, span: tuple[int, int]) -> tuple[int, int] | None:
        """Half-open range of response token indices whose characters overlap ``span`` of ``text``
        (None when no token does: the tokenizer drops every character of it)."""
        start, end = span
        hits = [i for i, (a, b) in enumerate(self.response_offsets(text)) if a < end and b > start]
        return (hits[0], hits[-1] + 1) if hits else None

    def encode(self, messages, response: str) -> tuple[list[int], list[int]]:
        """(prompt ids, response ids ending in EOS) for one prompt and response."""
        prompt = self.encode_prompt(messages)
        return prompt, self.encode_response(response, len(prompt))
