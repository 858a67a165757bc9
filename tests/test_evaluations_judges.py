import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from collapsebench.errors import UserError
from collapsebench.evaluations.judge_clients import ask_keeping, make_judge
from collapsebench.evaluations.judges import (
    aggregate_pairwise,
    fill,
    judge_pairwise,
    judge_quality,
    parse_bracket_verdict,
    parse_score,
    parse_verdict,
)
from evalhelpers import eval_ctx, save_real, save_samples, tiny_causal_lm


@pytest.mark.parametrize("text,score", [
    ("Score: 4", 4.0),
    ("score:3", 3.0),
    ("I think... SCORE: **5** because", 5.0),
    ("Score: 4/5", 4.0),
    ("Score: 10, no wait, 2", 2.0),        # 10 is out of range: the first valid integer wins
    ("Score: 3.5", math.nan),               # not an integer
    ("Score: 7", math.nan),
    ("The answer is 4", math.nan),          # no marker
    ("4 stars. Score: 1", 1.0),             # numbers before the marker do not count
    ("Score: x4 then 0", 0.0),              # digits inside words do not count
    ("", math.nan),
])
def test_parse_score(text, score):
    got = parse_score(text)
    assert (math.isnan(got) and math.isnan(score)) or got == score


@pytest.mark.parametrize("text,verdict", [
    ("Verdict: A", "A"),
    ("verdict: b", None),                   # lower-case b is not a verdict
    ("Verdict: Text B is better", "B"),
    ("Verdict: TIE", "tie"),
    ("Verdict: a tie", "tie"),              # the article 'a' is not the letter A
    ("A is better. Verdict: B", "B"),
    ("Verdict: neither", None),
    ("no marker A", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("text,verdict", [
    ("Text B is clearer. [[B]]", "B"),
    ("A rambles; B is noisy too. Final verdict: [[C]]", "tie"),
    ('The formats are "[[A]]", "[[B]]" or "[[C]]". A is better: [[A]]', "A"),  # the last one is the verdict
    ("Verdict: A", None),                   # the bracket format only
    ("[[a]]", None),
    ("", None),
])
def test_parse_bracket_verdict(text, verdict):
    assert parse_bracket_verdict(text) == verdict


def test_fill_puts_the_text_in_a_published_prompts_own_slot():
    assert fill("Rate it.\n<EXAMPLE>\nScore:", "k", "<EXAMPLE>", text="x {y}") == "Rate it.\nx {y}\nScore:"
    assert fill("A: {a} B: {b}", "k", a="1", b="2") == "A: 1 B: 2"
    with pytest.raises(UserError, match="placeholder: '<DOC>' is not in the template"):
        fill("Rate <EXAMPLE>", "k", "<DOC>", text="x")
    with pytest.raises(UserError, match=r"needs exactly the placeholders \{text\}"):
        fill("Rate {doc}", "k", text="x")
    with pytest.raises(UserError, match=r"needs exactly the placeholders \{text\}"):
        fill("Rate the extract: <EXAMPLE>", "k", text="x")  # no slot: the text would be dropped


def test_pairwise_aggregation_cancels_position_bias():
    always_a = aggregate_pairwise(["A"] * 5, ["A"] * 5)
    assert always_a["synthetic_win_rate"] == 0.5 and always_a["real_win_rate"] == 0.5
    assert always_a["position_a_rate"] == 1.0
    real_better = aggregate_pairwise(["B", "B", "tie", None], ["A", "A", "A", "tie"])
    assert real_better["real_win_rate"] == pytest.approx(5 / 7)
    assert real_better["tie_rate"] == pytest.approx(2 / 7)
    assert real_better["synthetic_win_rate"] == 0.0
    assert real_better["synthetic_score"] == pytest.approx(1 / 7)
    assert real_better["unparsed_rate"] == pytest.approx(1 / 8)
    assert math.isnan(aggregate_pairwise([None], [None])["synthetic_win_rate"])


TEXTS = ["the cat sat on the mat .", "a dog ran in the park .", "birds sing at dawn .", "fish swim in the sea ."]


def _ctx_with_data(tmp_path):
    ctx = eval_ctx(tmp_path, iteration=1)
    save_samples(ctx, 1, TEXTS[:3])
    save_real(ctx, TEXTS, split="holdout")
    return ctx


def test_local_random_judge_counts_unparsed(tmp_path):
    ctx = _ctx_with_data(tmp_path)
    model = tiny_causal_lm(tmp_path / "judge", TEXTS)  # random weights: babble, never "Score: n"
    m = judge_quality(ctx, {"type": "transformers", "model": str(model), "max_new_tokens": 5}, n_samples=2,
                      on="accepted")  # samples/ alone: no candidates/ here
    assert m["judge_quality_n_accepted"] == 2.0
    assert m["judge_quality_unparsed_rate_accepted"] == 1.0
    assert math.isnan(m["judge_quality_mean_accepted"])
    rows = [json.loads(line) for line in (ctx.out_dir / "judge_quality.jsonl").open()]
    assert len(rows) == 2 and all(r["score"] is None and isinstance(r["response"], str) for r in rows)
    p = judge_pairwise(ctx, {"type": "transformers", "model": str(model), "max_new_tokens": 3}, n_pairs=2)
    assert p["judge_pairwise_pairs"] == 2.0 and p["judge_pairwise_unparsed_rate"] == 1.0


def reply(handler: BaseHTTPRequestHandler, content: str) -> None:
    """An OpenAI chat completion holding ``content``, as the endpoint's 200 answer."""
    data = json.dumps({"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Canned(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Canned.seen.append((self.path, self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"]
        content = "Verdict: A" if "Text A" in prompt else "Sure. Score: 4"
        reply(self, content)

    def log_message(self, *args):
        pass


class _PrefersReal(BaseHTTPRequestHandler):
    """A judge that explains itself and ends with the bracket verdict for the real text (the
    synthetic texts say 'zzz'), quoting the formats first, as a judge may."""

    def do_POST(self):  # noqa: N802
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"][0]["content"]
        text_a = prompt.split("[Text A]", 1)[1].split("[Text B]", 1)[0]
        better = "B" if "zzz" in text_a else "A"
        reply(self, f'Options: "[[A]]", "[[B]]", "[[C]]". The synthetic one repeats itself. [[{better}]]')

    def log_message(self, *args):
        pass


def serve(server):
    """Serve ``server`` on the loopback in a thread for the test; yields its /v1 base URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def endpoint():
    pytest.importorskip("httpx")
    _Canned.seen.clear()
    yield from serve(HTTPServer(("127.0.0.1", 0), _Canned))


def test_openai_compatible_endpoint(tmp_path, endpoint, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sekret")
    ctx = _ctx_with_data(tmp_path)
    spec = {"type": "openai", "base_url": endpoint, "model": "judge-1", "api_key_env": "MY_JUDGE_KEY"}
    m = judge_quality(ctx, spec, n_samples=3, on="accepted")
    assert m == {"judge_quality_mean_accepted": 4.0, "judge_quality_unparsed_rate_accepted": 0.0,
                 "judge_quality_n_accepted": 3.0}
    path, auth, body = _Canned.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sekret" and body["model"] == "judge-1"
    p = judge_pairwise(ctx, spec, n_pairs=3)
    # the canned judge always says A: both orders cancel out
    assert p["judge_pairwise_synthetic_win_rate"] == 0.5 and p["judge_pairwise_position_a_rate"] == 1.0
    assert len(_Canned.seen) == 3 + 6


def test_judge_spec_errors(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(UserError, match="judge.type"):
        make_judge({"type": "magic"})
    with pytest.raises(UserError, match="'type'"):
        make_judge({"model": "x"})
    if pytest.importorskip("httpx"):
        with pytest.raises(UserError, match="NOPE_KEY"):
            make_judge({"type": "openai", "base_url": "http://127.0.0.1:1", "model": "m", "api_key_env": "NOPE_KEY"})


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then echoes each prompt's number; records how
    many requests were in flight at once (the server is threaded, so concurrent requests overlap)."""

    failures = 0
    lock = threading.Lock()
    in_flight = 0
    most = 0
    status = 503
    served = 0

    def do_POST(self):  # noqa: N802
        import time

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Flaky.lock:
            _Flaky.in_flight += 1
            _Flaky.most = max(_Flaky.most, _Flaky.in_flight)
            fail = _Flaky.failures > 0
            _Flaky.failures -= 1
            _Flaky.served += not fail
        time.sleep(0.05)
        with _Flaky.lock:
            _Flaky.in_flight -= 1
        if fail:
            self.send_response(_Flaky.status)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"busy")
            return
        content = f"Score: {body['messages'][0]['content'][-1]} ({body.get('structured_outputs')})"
        reply(self, content)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    pytest.importorskip("httpx")
    pytest.importorskip("tenacity")
    from http.server import ThreadingHTTPServer

    _Flaky.failures, _Flaky.in_flight, _Flaky.most, _Flaky.status, _Flaky.served = 0, 0, 0, 503, 0
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), _Flaky))


def test_a_served_judge_is_asked_concurrently_within_its_limit_and_in_order(flaky):
    judge = make_judge({"type": "openai", "base_url": flaky, "model": "m", "concurrency": 3,
                        "extra_body": {"structured_outputs": {"choice": ["1", "2"]}}})
    answers = judge([f"prompt {i % 10}" for i in range(12)])
    assert [a.split()[1] for a in answers] == [str(i % 10) for i in range(12)]  # the prompts' order
    assert "'choice': ['1', '2']" in answers[0]  # extra_body went into the request
    assert 2 <= _Flaky.most <= 3


def test_a_busy_server_is_retried_with_backoff(flaky):
    _Flaky.failures = 2  # two 503s, then answers
    judge = make_judge({"type": "openai", "base_url": flaky, "model": "m", "concurrency": 1, "backoff": 0.01})
    assert judge(["x 7"]) == ["Score: 7 (None)"]


def test_a_server_that_stays_down_is_one_message(flaky):
    _Flaky.failures = 100
    judge = make_judge({"type": "openai", "base_url": flaky, "model": "m", "retries": 2, "backoff": 0.01})
    with pytest.raises(UserError, match=r"did not answer \(HTTP 503, after 3 tries\)"):
        judge(["x 1"])
    refused = make_judge({"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "retries": 1,
                          "backoff": 0.01, "timeout": 2})
    with pytest.raises(UserError, match="did not answer after 2 tries .*resume the run"):
        refused(["x 1"])


def test_a_request_the_server_refuses_fails_at_once(flaky):
    _Flaky.failures, _Flaky.status = 1, 400  # a 400 is the request's fault: not retried
    judge = make_judge({"type": "openai", "base_url": flaky, "model": "m", "backoff": 0.01})
    with pytest.raises(UserError, match=r"refused the request \(HTTP 400\): busy"):
        judge(["x 1"])
    assert _Flaky.failures == 0  # one request only


def test_pairwise_judge_with_the_self_training_studys_prompt_and_bracket_verdicts(tmp_path):
    """The OLMo self-training recipe's prompt (001 App. B, judged as potential training data) from
    its file, both orders, verdicts parsed from [[A]] / [[B]] after the explanation."""
    pytest.importorskip("httpx")
    from conftest import REPO

    ctx = eval_ctx(tmp_path, iteration=1)
    save_samples(ctx, 1, [f"zzz zzz zzz {i}" for i in range(3)])
    save_real(ctx, TEXTS, split="holdout")
    prompt = REPO / "recipes" / "olmo-self-training" / "judge_prompt.txt"
    assert "as potential training data for large language models" in prompt.read_text()
    for url in serve(HTTPServer(("127.0.0.1", 0), _PrefersReal)):
        m = judge_pairwise(ctx, {"type": "openai", "base_url": url, "model": "j"}, n_pairs=3,
                           template_file=str(prompt), verdict_format="brackets")
    assert m["judge_pairwise_real_win_rate"] == 1.0 and m["judge_pairwise_unparsed_rate"] == 0.0
    assert m["judge_pairwise_position_a_rate"] == 0.5
    with pytest.raises(UserError, match="template_file: missing.txt is not a file"):
        judge_pairwise(ctx, {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "j"},
                       template_file="missing.txt")


def test_kept_answers_are_not_asked_again(flaky, tmp_path):
    judge = make_judge({"type": "openai", "base_url": flaky, "model": "m", "retries": 0, "backoff": 0.01})
    kept = tmp_path / "answers.jsonl"
    prompts = [f"prompt {i}" for i in range(5)] + ["prompt 0"]  # a prompt twice is asked once
    assert ask_keeping(judge, prompts[:2], kept) == ["Score: 0 (None)", "Score: 1 (None)"]
    with kept.open("a") as fh:
        fh.write('{"key": "cut sh')  # the process stopped in the middle of a line
    _Flaky.failures = 100  # the server goes down
    with pytest.raises(UserError, match=r"did not answer .*\(2 of 5 answers are kept\)"):
        ask_keeping(judge, prompts, kept)
    _Flaky.failures, _Flaky.served = 0, 0  # back up
    assert ask_keeping(judge, prompts, kept) == [f"Score: {i} (None)" for i in (0, 1, 2, 3, 4, 0)]
    assert _Flaky.served == 3  # only the prompts without an answer
    assert ask_keeping(judge, prompts, kept)[4] == "Score: 4 (None)" and _Flaky.served == 3
