"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 (started here, answering from
a script): retries on injected 500s, 429s and timeouts, immediate failure on 401, concurrency,
cache hits on rerun, and the API key never written anywhere."""

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from segtool.errors import SegtoolError
from segtool.eval.judges.base import ChatRequest
from segtool.eval.judges.cache import JudgeCache, answer_all
from segtool.eval.judges.http import HttpJudge, JudgeError, resolve_api_key

SECRET = "sk-test-0123456789-SECRET"


class Script:
    """What the server does with each request: a queue of actions, then ``default``."""

    def __init__(self):
        self.actions, self.default, self.seen, self.lock = [], "ok", [], threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.delay = 0.0


def _reply(body: dict) -> dict:
    """An OpenAI chat completion: text "M"; top logprobs m: 0.2, M: 0.8 when asked."""
    choice = {"index": 0, "message": {"role": "assistant", "content": "M [[A>B]] Rating: [[7]]"}, "finish_reason": "stop"}
    if body.get("logprobs"):
        top = [{"token": "M", "logprob": math.log(0.8)}, {"token": "m", "logprob": math.log(0.2)}]
        choice["logprobs"] = {"content": [{"token": "M", "logprob": math.log(0.8), "top_logprobs": top}]}
    return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}


def _echoing_reply(body: dict, auth: str, *, content: bool = False, logprob: bool = False) -> str:
    reply = _reply(body)
    choice = reply["choices"][0]
    if content:
        choice["message"]["content"] += f" (request came with {auth})"
    if logprob:
        choice["logprobs"] = {"content": [{"token": "M", "logprob": 0.0, "top_logprobs": [{"token": "M", "logprob": auth}]}]}
    return json.dumps(reply)


# Careless endpoints echoing the request's Authorization header back: action -> (status, content type,
# body from (header, request body)). Each one reaches a different message-building path.
ECHOES = {
    "echo-text-200": (200, "text/plain", lambda auth, body: f"proxy debug: Authorization: {auth}"),
    "echo-cut-200": (200, "text/plain", lambda auth, body: "x" * 100 + f" {auth}"),  # the key straddles a 120-char cut
    "echo-html-502": (502, "text/html", lambda auth, body: f"<html><pre>Authorization: {auth}</pre></html>"),
    "echo-text-403": (403, "text/plain", lambda auth, body: f"forbidden for {auth}"),
    "echo-json-400": (400, "application/json",
                      lambda auth, body: json.dumps({"error": {"message": "x" * 290 + f" {auth}"}})),
    "echo-no-choices": (200, "application/json", lambda auth, body: json.dumps({"headers": {"Authorization": auth}})),
    "echo-bad-logprob": (200, "application/json", lambda auth, body: _echoing_reply(body, auth, logprob=True)),
    "echo-content": (200, "application/json", lambda auth, body: _echoing_reply(body, auth, content=True)),
}


def leaked(text: str) -> bool:
    """Any 10 consecutive characters of the key (a cut-off key leaks too)."""
    return any(SECRET[i : i + 10] in text for i in range(len(SECRET) - 9))


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                action = script.actions.pop(0) if script.actions else script.default
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            try:
                if action == "ok":
                    time.sleep(script.delay)
                if action == "401-after-3":  # fail once three requests are in flight
                    deadline = time.time() + 5
                    while len(script.seen) < 3 and time.time() < deadline:
                        time.sleep(0.005)
                    action = "401"
                if action == "timeout":
                    time.sleep(1.0)  # longer than the client's timeout
                    return
                if action in ECHOES:
                    status, kind, make = ECHOES[action]
                    data = make(self.headers.get("Authorization"), body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if action in ("500", "429", "401"):
                    self.send_response(int(action))
                    if action == "429":
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()  # a careless server echoing the credentials back
                    self.wfile.write(json.dumps({"error": {"message": f"bad key {self.headers.get('Authorization')}"}}).encode())
                    return
                data = json.dumps(_reply(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with script.lock:
                    script.in_flight -= 1

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield script
    httpd.shutdown()
    httpd.server_close()


def _judge(server, **kw):
    delays = []
    defaults = dict(timeout=0.3, retries=4, backoff=0.01, concurrency=4, sleep=delays.append)
    judge = HttpJudge(server.url, "judge-model", SECRET, **{**defaults, **kw})
    return judge, delays


REQ = ChatRequest.of([{"role": "user", "content": "which is better?"}], 1, 1.0, 5)


def test_retries_500_timeout_and_429_then_succeeds(server):
    server.actions = ["500", "timeout", "429"]
    judge, delays = _judge(server)
    out = judge.call(REQ)
    assert out.text.startswith("M") and out.top_logprobs[0][1] == {"token": "m", "logprob": math.log(0.2)}
    assert len(server.seen) == 4
    assert server.seen[0]["path"] == "/v1/chat/completions" and server.seen[0]["auth"] == f"Bearer {SECRET}"
    assert server.seen[0]["body"] == {"model": "judge-model", **REQ.body()}
    assert len(delays) == 3 and delays[2] == 0.0  # back-off, back-off, then the server's Retry-After: 0
    assert 0.005 <= delays[0] <= 0.01 and 0.01 <= delays[1] <= 0.02  # exponential, with jitter in [0.5, 1]


def test_retries_exhausted_and_refusals_never_show_the_key(server):
    server.actions = ["500"] * 3
    judge, _ = _judge(server, retries=2)
    with pytest.raises(JudgeError) as err:
        judge.call(REQ)
    assert "failed 3 times" in err.value.message and "HTTP 500" in err.value.message
    assert SECRET not in err.value.message and "***" in err.value.message  # the echoed key is scrubbed
    server.actions = ["401"]
    with pytest.raises(JudgeError) as err:
        judge.call(REQ)
    assert "HTTP 401" in err.value.message and SECRET not in err.value.message and "API key" in err.value.hint
    assert len(server.seen) == 4  # 3 tries, then the 401 once: never retried


def test_connection_refused_is_retried_then_reported(tmp_path):
    judge = HttpJudge("http://127.0.0.1:9/v1", "m", SECRET, timeout=0.2, retries=1, backoff=0.0, sleep=lambda s: None)
    with pytest.raises(JudgeError, match="failed 2 times; last error: connection failed"):
        judge.call(REQ)


def test_concurrency_limit_and_cache_hits_on_rerun(server, tmp_path):
    server.delay = 0.3
    judge, _ = _judge(server, timeout=5.0, concurrency=3)
    requests = [ChatRequest.of([{"role": "user", "content": f"q{i}"}], 8, 0.0) for i in range(9)]
    cache = JudgeCache(tmp_path / "cache", judge.identity)
    started = time.perf_counter()
    first = answer_all(judge, cache, requests, quiet=True)
    elapsed = time.perf_counter() - started
    assert len(server.seen) == 9 and server.max_in_flight == 3
    assert elapsed < 9 * 0.3 * 0.6  # in parallel (ideally 0.9 s), not one after the other (2.7 s)
    rerun_cache = JudgeCache(tmp_path / "cache", judge.identity)
    again = answer_all(judge, rerun_cache, requests, quiet=True)
    assert len(server.seen) == 9 and rerun_cache.stats() == {"cache_hits": 9, "judge_calls": 0}
    assert [c.text for c in again] == [c.text for c in first]
    other = JudgeCache(tmp_path / "cache", {**judge.identity, "model": "another-judge"})
    assert other.get(requests[0].body()) is None  # keyed by the judge's identity too


def test_api_key_resolution(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai")
    assert resolve_api_key(None) == "from-openai"
    monkeypatch.setenv("SEGTOOL_JUDGE_API_KEY", "from-segtool")
    assert resolve_api_key(None) == "from-segtool"
    assert resolve_api_key("from-flag") == "from-segtool".replace("segtool", "flag")


def test_cli_alpaca_with_the_http_judge_caches_and_never_writes_the_key(server, tmp_path, tiny_model_dir, segtool_cli,
                                                                       monkeypatch):
    """`segtool eval alpaca` end to end on 3 prompts: the judge's logprobs (m 0.2, M 0.8) give
    preference 1.8 where the outputs were shown in order and 1.2 where they were switched; a rerun
    and a --force rerun make no new calls; no written file and no output line holds the key."""
    from segtool.eval.alpaca_judging import is_switched
    from segtool.eval.benchmarks import questions

    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "segcache"))
    monkeypatch.setenv("SEGTOOL_JUDGE_API_KEY", SECRET)
    args = ["eval", "alpaca", "--preset", "tiny", "--workdir", tmp_path / "w", "--model", tiny_model_dir,
            "--judge", "http", "--judge-url", server.url, "--judge-model", "judge-model", "--baseline", "official",
            "--limit", "3", "--set", "eval.max_new_tokens=8", "--json"]
    runs = [segtool_cli(*args, *extra) for extra in ([], [], ["--force"])]
    for code, out, err in runs:
        assert code == 0, err
        assert SECRET not in out + err
    assert len(server.seen) == 3 and {s["auth"] for s in server.seen} == {f"Bearer {SECRET}"}
    result = json.loads(runs[0][1])["results"][0]
    prefs = [1.2 if is_switched(q.turns[0]) else 1.8 for q in questions("alpaca", 3)]
    assert result["metrics"]["win_rate"] == pytest.approx(100 * sum(p - 1 for p in prefs) / 3)
    assert result["metrics"]["judge_calls"] == 3 and result["metrics"]["proxy"] is False
    assert json.loads(runs[1][1])["results"][0]["outcome"] == "up-to-date"
    assert json.loads(runs[2][1])["results"][0]["metrics"]["judge_calls"] == 0  # answers redone, judge from cache
    written = [p for root in (tmp_path / "w", tmp_path / "segcache") for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "annotations.json" for p in written) and any("judge" in p.parts for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def test_judge_errors_are_segtool_errors():
    assert issubclass(JudgeError, SegtoolError)


def test_answers_in_flight_are_kept_when_another_call_fails(server, tmp_path):
    """One request fails for good (401) while two others are in flight: those two are answered and
    cached before the error is raised; nothing queued behind them is sent."""
    server.delay = 0.5
    server.actions = ["401-after-3"]
    judge, _ = _judge(server, timeout=5.0, concurrency=3)
    requests = [ChatRequest.of([{"role": "user", "content": f"q{i}"}], 8, 0.0) for i in range(8)]
    cache = JudgeCache(tmp_path, judge.identity)
    with pytest.raises(JudgeError, match="HTTP 401"):
        answer_all(judge, cache, requests, quiet=True)
    assert len(server.seen) == 3 and cache.calls == 2
    assert sum(cache.get(r.body()) is not None for r in requests) == 2


@pytest.mark.parametrize("action", [a for a in ECHOES if a != "echo-content"])
def test_no_error_message_shows_the_key_an_endpoint_echoes(server, action):
    server.default = action
    judge, _ = _judge(server, retries=1, timeout=5.0)
    request = ChatRequest.of([{"role": "user", "content": "which is better?"}], 1, 1.0, 5)
    with pytest.raises(JudgeError) as err:
        judge.call(request)
    assert server.seen and server.seen[0]["auth"] == f"Bearer {SECRET}"
    assert not leaked(err.value.message) and not leaked(err.value.hint or ""), err.value.message
    assert "Bearer **" in err.value.message  # redacted where it stood (the marker itself may be cut short)


def test_an_echoed_key_in_a_reply_is_scrubbed_before_caching(server, tmp_path):
    server.default = "echo-content"
    judge, _ = _judge(server, timeout=5.0)
    cache = JudgeCache(tmp_path, judge.identity)
    (completion,) = answer_all(judge, cache, [REQ], quiet=True)
    assert completion.text.endswith("(request came with Bearer ***)")
    assert not leaked(json.dumps(completion.to_json()))
    assert not any(leaked(p.read_text()) for p in tmp_path.rglob("*.json"))


def test_a_key_inside_the_url_is_scrubbed_from_messages_and_identity():
    judge = HttpJudge(f"http://127.0.0.1:9/{SECRET}/v1", "m", SECRET, timeout=0.2, retries=0, sleep=lambda s: None)
    assert not leaked(json.dumps(judge.identity)) and not leaked(judge.label)
    with pytest.raises(JudgeError) as err:
        judge.call(REQ)
    assert "connection failed" in err.value.message and not leaked(err.value.message)
    for url in (f"http://127.0.0.1:9x/{SECRET}/v1", f"127.0.0.1/{SECRET}/v1"):  # a bad port, no scheme
        with pytest.raises(JudgeError) as err:
            HttpJudge(url, "m", SECRET, retries=0, sleep=lambda s: None).call(REQ)
        assert not leaked(err.value.message)


def test_cli_never_prints_or_writes_an_echoed_key(server, tmp_path, tiny_model_dir):
    """The real command line, in a subprocess with the key in its environment, against every echoing
    endpoint: a one-line error (or, for a reply quoting the key, a finished run) and the key nowhere in
    stdout, stderr, the judge cache or the run directory."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SEGTOOL_CACHE": str(tmp_path / "segcache"), "SEGTOOL_JUDGE_API_KEY": SECRET, "COLUMNS": "200"}
    base = ["eval", "alpaca", "--preset", "tiny", "--workdir", str(tmp_path / "w"), "--model", str(tiny_model_dir),
            "--judge", "http", "--judge-model", "judge-model", "--baseline", "official", "--limit", "1",
            "--set", "eval.max_new_tokens=4", "--set", "eval.retries=1", "--set", "eval.backoff=0"]
    # failures first: the last one succeeds, and its cached answer would serve every later run
    runs = [(action, server.url) for action in ECHOES if action != "echo-content"]
    runs += [("ok", f"http://127.0.0.1:9/{SECRET}/v1"), ("echo-content", server.url)]
    for action, url in runs:
        server.default = action
        proc = subprocess.run([sys.executable, "-m", "segtool", *base, "--judge-url", url], env=env,
                              capture_output=True, text=True, timeout=300)
        assert not leaked(proc.stdout + proc.stderr), (action, proc.stdout + proc.stderr)
        if action == "echo-content":
            assert proc.returncode == 0, proc.stderr
        else:
            lines = proc.stderr.splitlines()
            assert proc.returncode == 1 and lines[-2].startswith("error: judge"), (action, proc.stderr)
            assert lines[-1].startswith("hint: ") and "Traceback" not in proc.stderr, (action, proc.stderr)
    written = [p for root in (tmp_path / "w", tmp_path / "segcache") for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "annotations.json" for p in written) and any("judge" in p.parts for p in written)
    for path in written:
        assert not leaked(path.read_bytes().decode("utf-8", "replace")), path


def test_a_base_url_variable_with_a_credential_is_refused_without_repeating_it(monkeypatch):
    from segtool.errors import ConfigError
    from segtool.eval.judges.http import resolve_base_url

    monkeypatch.setenv("SEGTOOL_JUDGE_BASE_URL", "https://judge.example/v1?key=sk-SECRET123")
    with pytest.raises(ConfigError) as exc:
        resolve_base_url("")
    assert exc.value.message.startswith("$SEGTOOL_JUDGE_BASE_URL carries a credential")
    assert "SECRET" not in exc.value.message + exc.value.hint
    monkeypatch.setenv("SEGTOOL_JUDGE_BASE_URL", "https://judge.example/v1/")
    assert resolve_base_url("") == "https://judge.example/v1"
