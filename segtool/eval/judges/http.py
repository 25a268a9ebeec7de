"""A judge behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, TGI, llama.cpp,
LiteLLM, ...), with the standard library only: urllib for HTTP, a thread pool for concurrency.

Timeouts, connection failures, 408/409/425/429 and 5xx replies are retried with exponential back-off
(a Retry-After header is honoured); other 4xx replies stop the run at once, since repeating them
cannot help. The API key goes into the Authorization header and nowhere else: it is not part of the
judge's identity and not cached. Endpoints may echo the request's headers back (in an error page, a JSON
error, even a reply), so everything the judge passes on is scrubbed of the key by ``redact``: every
reply before it is parsed or cached, every message built from a reply or an exception before it is cut
short (a cut key is still a leak), and the base URL in the judge's identity and label.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from segtool.config.schema import url_has_credentials
from segtool.errors import ConfigError
from segtool.eval.judges.base import ChatRequest, Completion, JudgeError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEY_VARIABLES = ("SEGTOOL_JUDGE_API_KEY", "OPENAI_API_KEY")
URL_VARIABLES = ("SEGTOOL_JUDGE_BASE_URL", "OPENAI_BASE_URL")
RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx
MAX_DELAY = 60.0
REDACTED = "***"


def redact(text: str, secret: str) -> str:
    """``text`` with ``secret`` replaced, also as it appears quoted in URLs or escaped in JSON."""
    if not secret:
        return text
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def redact_json(value, secret: str):
    """A parsed JSON value with ``secret`` redacted from every string in it, keys included."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, list):
        return [redact_json(v, secret) for v in value]
    if isinstance(value, dict):
        return {redact(k, secret): redact_json(v, secret) for k, v in value.items()}
    return value


def _clip(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (only ever applied to redacted text)."""
    return " ".join(text.split())[:limit]


def resolve_base_url(configured: str) -> str:
    """The configured URL, else $SEGTOOL_JUDGE_BASE_URL / $OPENAI_BASE_URL, else OpenAI's. A URL that
    carries a credential is refused (judge identities and labels are written to disk and shown)."""
    for where, value in (("eval.base_url", configured), *((f"${v}", os.environ.get(v, "")) for v in URL_VARIABLES)):
        if value:
            if url_has_credentials(value):  # the message must not repeat the URL: it holds the secret
                raise ConfigError(f"{where} carries a credential (user:password@ or a key/token query parameter)",
                                  "give the URL without it, and the key in $SEGTOOL_JUDGE_API_KEY or --api-key")
            return value.rstrip("/")
    return DEFAULT_BASE_URL


def resolve_api_key(flag: str | None) -> str:
    """--api-key, else $SEGTOOL_JUDGE_API_KEY, else $OPENAI_API_KEY ("" = send no Authorization)."""
    if flag:
        return flag
    for name in KEY_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return ""


class _Retryable(Exception):
    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.reason, self.delay = reason, delay


class _Skipped(Exception):
    """A queued request not sent because another one failed."""


class HttpJudge:
    def __init__(self, base_url: str, model: str, api_key: str = "", *, timeout: float = 120.0, retries: int = 6,
                 backoff: float = 2.0, concurrency: int = 8, sleep=time.sleep):
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.model = model
        self._key = api_key
        self.timeout, self.retries, self.backoff, self.concurrency = timeout, retries, backoff, concurrency
        self._sleep = sleep
        shown = self._scrub(base_url.rstrip("/"))  # a key pasted into the URL is still the key
        self.identity = {"kind": "http", "base_url": shown, "model": model}
        self.name = model  # what judgment files call the judge
        self.label = f"{model} at {shown}"
        self.proxy = False

    # -- one call ------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return redact(text, self._key)

    def _post(self, body: dict) -> dict:
        data = json.dumps({"model": self.model, **body}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as err:
            detail = _clip(self._scrub(_error_text(err)), 300)
            if err.code in RETRY_STATUS or err.code >= 500:
                raise _Retryable(f"HTTP {err.code}: {detail}", _retry_after(err.headers)) from None
            hint = {401: "check the API key (--api-key or $SEGTOOL_JUDGE_API_KEY)",
                    403: "check the API key's permissions for this model",
                    404: "check the base URL (it should end in /v1) and the judge model name"}.get(
                        err.code, "check the judge model name and the endpoint's documentation")
            raise JudgeError(f"judge endpoint {self.url} refused the request: HTTP {err.code}: {detail}", hint) from None
        except TimeoutError as err:
            raise _Retryable(self._scrub(f"timed out after {self.timeout:g} s ({err})")) from None
        except urllib.error.URLError as err:
            raise _Retryable(self._scrub(f"connection failed: {err.reason}")) from None
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            raise _Retryable(self._scrub(f"connection failed: {type(err).__name__}: {err}")) from None
        except ValueError as err:  # urllib refuses the URL itself (no scheme, say)
            raise JudgeError(self._scrub(f"judge URL {self.url} is not usable: {err}"),
                             "check --judge-url / eval.base_url (e.g. http://localhost:8000/v1)") from None
        try:
            return redact_json(json.loads(raw), self._key)
        except ValueError:
            text = self._scrub(raw.decode("utf-8", "replace"))
            raise _Retryable(f"the reply is not JSON: {_clip(text, 120)!r}") from None

    def call(self, request: ChatRequest) -> Completion:
        """One completion, retried with exponential back-off on transient failures."""
        try:
            return self._call(request)
        except JudgeError as err:  # the one way out: whatever a message quotes, it leaves without the key
            raise JudgeError(self._scrub(err.message), err.hint) from None
        except Exception as err:  # not expected; its text may still quote a reply or the URL
            raise RuntimeError(self._scrub(f"{type(err).__name__}: {err}")) from None

    def _call(self, request: ChatRequest) -> Completion:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return parse_reply(self._post(request.body()), self.url)
            except _Retryable as err:
                last = err.reason
                if attempt == self.retries:
                    break
                delay = min(MAX_DELAY, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                self._sleep(min(MAX_DELAY, err.delay) if err.delay is not None else delay)
        raise JudgeError(f"judge endpoint {self.url} failed {self.retries + 1} times; last error: {last}",
                         "answers received so far are cached: re-run the same command to continue "
                         "(raise eval.retries / eval.timeout for a slow endpoint)")

    # -- many calls ----------------------------------------------------------------------------
    def answer(self, requests: list[ChatRequest], on_done) -> None:
        """Call ``on_done(k, completion)`` (in this thread) as each request is answered. After a
        failure no queued request starts, the ones in flight finish and are recorded (they are paid
        for), then the failure is raised."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")
        stop = threading.Event()  # set by the failing worker itself, before it takes the next request

        def guarded(req: ChatRequest) -> Completion:
            if stop.is_set():
                raise _Skipped()
            try:
                return self.call(req)
            except BaseException:
                stop.set()
                raise

        ok = False
        try:
            futures = {pool.submit(guarded, req): k for k, req in enumerate(requests)}
            pending, error = set(futures), None
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    if fut.cancelled() or isinstance(fut.exception(), _Skipped):
                        continue
                    if fut.exception() is None:
                        on_done(futures[fut], fut.result())
                    elif error is None:
                        error = fut.exception()
                        for queued in pending:
                            queued.cancel()  # only calls that have not started can be cancelled
            if error is not None:
                raise error
            ok = True
        finally:
            pool.shutdown(wait=ok, cancel_futures=True)  # Ctrl-C: do not wait for calls in flight


def parse_reply(reply: dict, url: str) -> Completion:
    try:
        choice = reply["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise JudgeError(f"judge endpoint {url} replied without choices[0].message: {str(reply)[:200]}",
                         "is this an OpenAI-compatible /chat/completions endpoint?") from None
    top = None
    try:
        content = (choice.get("logprobs") or {}).get("content")
        if content:
            top = [[{"token": t["token"], "logprob": float(t["logprob"])} for t in (tok.get("top_logprobs") or [])]
                   for tok in content]
    except (KeyError, TypeError, AttributeError, ValueError):
        raise JudgeError(f"judge endpoint {url} replied with malformed logprobs: {str(choice.get('logprobs'))[:200]}",
                         "is this an OpenAI-compatible /chat/completions endpoint with logprobs support?") from None
    return Completion(text, top, choice)


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        body = err.read().decode("utf-8", "replace")
    except OSError:
        return err.reason or ""
    try:
        message = json.loads(body).get("error", {})
        message = message.get("message", body) if isinstance(message, dict) else str(message)
    except (ValueError, AttributeError):
        message = body
    return str(message)  # whole: callers redact before they cut it short


def _retry_after(headers) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After"))) if headers and headers.get("Retry-After") else None
    except ValueError:
        return None
