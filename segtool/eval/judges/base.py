"""What every chat judge speaks: a request (OpenAI chat-completions body without the model) and a
completion (text, optional top logprobs per generated token, and the raw choice for the record).

Judges are pluggable (METHOD §8): an OpenAI-compatible endpoint (``http``), a local Hugging Face
model (``local``); the reward-model proxy (``proxy``) scores answers directly and has its own class.
A judge's ``identity`` says what decides its answers (kind, model, endpoint) and never holds a key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from segtool.errors import SegtoolError


class JudgeError(SegtoolError):
    """The judge could not answer (endpoint refused, retries exhausted, malformed reply)."""


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content), hashable so a request can be a cache key
    max_tokens: int
    temperature: float
    top_logprobs: int = 0  # > 0: ask for the top-k logprobs of every generated token

    @classmethod
    def of(cls, messages: list[dict], max_tokens: int, temperature: float, top_logprobs: int = 0) -> ChatRequest:
        return cls(tuple((m["role"], m["content"]) for m in messages), int(max_tokens), float(temperature), int(top_logprobs))

    def chat_messages(self) -> list[dict]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def body(self) -> dict:
        """The chat-completions body without "model" (the judge adds it): what the cache key hashes."""
        out = {"messages": self.chat_messages(), "max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.top_logprobs:
            out.update(logprobs=True, top_logprobs=self.top_logprobs)
        return out


@dataclass
class Completion:
    text: str
    top_logprobs: list[list[dict]] | None = None  # per generated token: [{"token", "logprob"}] best first
    raw: dict = field(default_factory=dict)  # the endpoint's choice object (alpaca_eval keeps it as raw_completion)

    def to_json(self) -> dict:
        return {"text": self.text, "top_logprobs": self.top_logprobs, "raw": self.raw}

    @classmethod
    def from_json(cls, data: dict) -> Completion:
        return cls(data["text"], data.get("top_logprobs"), data.get("raw") or {})


def describe(identity: dict) -> str:
    return json.dumps(identity, sort_keys=True)
