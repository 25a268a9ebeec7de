"""A local Hugging Face causal LM as the judge: the same requests as the HTTP judge, answered with
``models.generation.generate`` (greedy at temperature 0), chat-formatted by the one Encoder.

Top logprobs, when a request asks for them (AlpacaEval's weighted judge), come from one extra
teacher-forced forward pass over prompt + answer: the distribution at every answer position is the
one generation drew from. Tokens are reported as decoded text without leading spaces, so a
SentencePiece "▁m" reads "m" as an OpenAI tokenizer would write it. The model loads on first use, so
a rerun answered entirely from the cache never loads it.
"""

from __future__ import annotations

import torch

from segtool.eval.judges.base import ChatRequest, Completion
from segtool.inputs.formatting import Encoder
from segtool.models.generation import generate, hash_seed
from segtool.models.loading import load_causal_lm, load_tokenizer, pad_id_of, pick_device, resolve_model_source


class LocalJudge:
    def __init__(self, model_cfg, *, max_len: int, batch_size: int = 8, seed: int = 0):
        self.model_cfg = model_cfg
        self.source = resolve_model_source(model_cfg)
        self.identity = {"kind": "hf", "model": self.source.fingerprint(), "dtype": model_cfg.dtype}
        self.name = f"hf:{model_cfg.path}"
        self.label = f"local {model_cfg.path}"
        self.proxy = False
        self.max_len, self.batch_size, self.seed = max_len, batch_size, seed
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            tokenizer = load_tokenizer(self.source, self.model_cfg)
            model = load_causal_lm(self.source, self.model_cfg, pick_device(self.model_cfg.device))
            ctx = int(getattr(model.config, "max_position_embeddings", None) or self.max_len)
            self._loaded = (model, tokenizer, ctx, Encoder.create(tokenizer, ctx, max(1, ctx - 1)))
        return self._loaded

    def answer(self, requests: list[ChatRequest], on_done) -> None:
        model, tokenizer, ctx, encoder = self._load()
        groups: dict[tuple, list[int]] = {}
        for k, req in enumerate(requests):
            groups.setdefault((req.temperature, req.max_tokens, req.top_logprobs), []).append(k)
        for (temperature, max_tokens, top_k), ks in groups.items():
            # A long judge prompt keeps its right end (the verdict instructions) and at least half the
            # context, so a small model is not left with a one-token prompt when max_tokens is large.
            prompts = {k: self._prompt(encoder, requests[k], min(max_tokens, ctx // 2), ctx) for k in ks}
            ordered = sorted(ks, key=lambda k: -len(prompts[k]))
            for start in range(0, len(ordered), self.batch_size):
                batch = ordered[start : start + self.batch_size]
                budget = max(1, min(max_tokens, ctx - max(len(prompts[k]) for k in batch)))
                seed = hash_seed(self.seed, batch[0])
                for k, completion in zip(batch, self._complete(model, tokenizer, encoder, [prompts[k] for k in batch],
                                                                budget, temperature, top_k, seed)):
                    on_done(k, completion)

    @staticmethod
    def _prompt(encoder, request: ChatRequest, budget: int, ctx: int) -> list[int]:
        ids = encoder.encode_prompt(request.chat_messages())
        return ids[-(ctx - budget) :]  # keep the right end (the instructions on the verdict format)

    def _complete(self, model, tokenizer, encoder, prompts, budget, temperature, top_k, seed) -> list[Completion]:
        pad = pad_id_of(encoder.tokenizer)
        out = generate(model, prompts, eos_id=encoder.eos_id, pad_id=pad, max_new_tokens=budget,
                       temperature=temperature, batch_size=len(prompts), seed=seed, force_eos=False)
        tops = self._top_logprobs(model, tokenizer, prompts, out.responses, top_k) if top_k else [None] * len(prompts)
        completions = []
        for ids, cut, top in zip(out.responses, out.truncated, tops):
            body = ids if cut else ids[:-1]
            text = tokenizer.decode(body, skip_special_tokens=True)
            completions.append(Completion(text, top, {"message": {"role": "assistant", "content": text},
                                                      "finish_reason": "length" if cut else "stop"}))
        return completions

    @staticmethod
    def _top_logprobs(model, tokenizer, prompts, responses, k: int) -> list[list[list[dict]]]:
        out = []
        device = next(model.parameters()).device
        with torch.inference_mode():
            for prompt, response in zip(prompts, responses):
                ids = torch.tensor([prompt + response], device=device)
                logits = model(input_ids=ids).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(response)].float()
                values, indices = torch.log_softmax(logits, dim=-1).topk(k, dim=-1)
                out.append([[{"token": _token_text(tokenizer, int(i)), "logprob": float(v)} for v, i in zip(vs, ix)]
                            for vs, ix in zip(values.tolist(), indices.tolist())])
        return out


def _token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id]).lstrip()
