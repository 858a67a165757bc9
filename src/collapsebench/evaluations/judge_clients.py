"""How a judge is asked: a local ``transformers`` causal LM or an OpenAI-compatible endpoint.

A judge is a function from prompts to answers in the prompts' order (:class:`Judge`); it tells
``on_answer`` of each answer as it arrives, and :func:`ask_keeping` writes each one to the work
folder at once, so a phase stopped by a judge server that went down asks, when resumed, only for
the prompts that have no answer yet. The evaluations that use a judge are in
:mod:`collapsebench.evaluations.judges`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from collapsebench.errors import UserError

Answered = Callable[[int, str], None]


class Judge(Protocol):
    """Answers to ``prompts`` in their order; ``on_answer(i, answer)`` hears of each one as it
    arrives (a served judge answers out of order), so the caller can keep it."""

    def __call__(self, prompts: list[str], on_answer: Answered | None = None) -> list[str]: ...


def transformers_judge(model: str, *, max_new_tokens: int = 32, batch_size: int = 8, device: str | None = None) -> Judge:
    """A local causal LM as judge: greedy completions, through the chat template when there is one."""
    from collapsebench.models.generation import greedy_responder
    from collapsebench.models.loading import load_causal_lm

    try:
        lm, tok = load_causal_lm(model)
    except OSError as exc:
        raise UserError(f"judge model '{model}': cannot load it ({exc})") from None
    respond = greedy_responder(lm, tok, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)

    def run(prompts: list[str], on_answer: Answered | None = None) -> list[str]:
        answers = respond(prompts)
        for i, answer in enumerate(answers):
            if on_answer is not None:
                on_answer(i, answer)
        return answers

    return run


def openai_judge(base_url: str, model: str, *, api_key_env: str | None = None, max_new_tokens: int = 32,
                 timeout: float = 120.0, temperature: float = 0.0, concurrency: int = 8, retries: int = 5,
                 backoff: float = 1.0, extra_body: dict[str, Any] | None = None) -> Judge:
    """An OpenAI-compatible ``/chat/completions`` endpoint as judge (needs ``httpx`` and ``tenacity``).

    Up to ``concurrency`` requests are in flight at once (a served model batches them), each with
    ``timeout`` seconds. A request that times out, cannot connect, or gets 429 or a 5xx is tried
    again, up to ``retries`` more times, waiting ``backoff`` x 2^n seconds (at most a minute)
    between tries; a server that stays down then fails the phase with one message (the requests not
    yet sent are dropped), and resuming the run asks for what has no answer yet. Another 4xx means
    the request itself is wrong (a model name, an argument) and fails at once. ``extra_body`` goes
    into every request as it is: a vLLM server's structured outputs, e.g. ``{structured_outputs:
    {choice: ["Verdict: A", "Verdict: B", "Verdict: tie"]}}`` or ``{structured_outputs: {regex:
    "Score: [0-5]"}}``, keep a small judge to the answer format. (vLLM 0.32 ignores the removed
    ``guided_choice`` / ``guided_regex`` fields, with a warning in its log only: the answers are
    then unconstrained.)"""
    try:
        import httpx
        import tenacity
    except ImportError:
        raise UserError("an OpenAI-compatible judge needs httpx and tenacity: pip install 'collapsebench[judge]'") from None
    headers = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UserError(f"judge.api_key_env: environment variable '{api_key_env}' is not set")
        headers["Authorization"] = f"Bearer {key}"
    url = base_url.rstrip("/") + "/chat/completions"

    def transient(exc: BaseException) -> bool:
        if isinstance(exc, httpx.HTTPStatusError):
            return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
        return isinstance(exc, httpx.TransportError)  # timeouts, refused or dropped connections

    @tenacity.retry(retry=tenacity.retry_if_exception(transient), stop=tenacity.stop_after_attempt(retries + 1),
                    wait=tenacity.wait_exponential(multiplier=backoff, max=60), reraise=True)
    def ask(client: Any, prompt: str) -> Any:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_new_tokens,
                "temperature": temperature, **(extra_body or {})}
        resp = client.post(url, json=body)
        resp.raise_for_status()
        return resp

    def one(client: Any, prompt: str) -> str:
        try:
            resp = ask(client, prompt)
        except httpx.HTTPStatusError as exc:
            what = "did not answer" if transient(exc) else "refused the request"
            raise UserError(f"judge endpoint {url} {what} (HTTP {exc.response.status_code}"
                            f"{', after ' + str(retries + 1) + ' tries' if transient(exc) else ''}): "
                            f"{exc.response.text[:200]}") from None
        except httpx.TransportError as exc:
            raise UserError(f"judge endpoint {url} did not answer after {retries + 1} tries "
                            f"({type(exc).__name__}: {exc}); start it (or fix judge.base_url) and resume the run") from None
        try:
            return str(resp.json()["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return f"<judge error: unreadable answer ({exc})>"  # counted as unparsed

    def run(prompts: list[str], on_answer: Answered | None = None) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        answers = [""] * len(prompts)
        limits = httpx.Limits(max_connections=concurrency)
        with httpx.Client(timeout=timeout, headers=headers, limits=limits) as client:
            pool = ThreadPoolExecutor(max_workers=concurrency)
            try:
                asked = {pool.submit(one, client, prompt): i for i, prompt in enumerate(prompts)}
                for done in as_completed(asked):
                    i = asked[done]
                    answers[i] = done.result()  # the first failure ends the phase
                    if on_answer is not None:
                        on_answer(i, answers[i])
            finally:  # on a failure, the requests not yet sent are dropped, those in flight end
                pool.shutdown(wait=True, cancel_futures=True)
        return answers

    return run


def ask_keeping(judge: Judge, prompts: list[str], kept: Path) -> list[str]:
    """The judge's answers to ``prompts``, each appended to ``kept`` as it arrives; the prompts
    answered there already (by an attempt that the server's going down stopped) are not asked
    again, and a prompt that comes twice is asked once. A failure says how many answers are kept."""
    def key(prompt: str) -> str:
        return hashlib.sha256(prompt.encode()).hexdigest()

    text = kept.read_text(encoding="utf-8") if kept.is_file() else ""
    known: dict[str, str] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
            known[str(row["key"])] = str(row["response"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short when the process stopped
    missing = list(dict.fromkeys(p for p in prompts if key(p) not in known))
    kept.parent.mkdir(parents=True, exist_ok=True)
    with kept.open("a", encoding="utf-8") as fh:
        if text and not text.endswith("\n"):
            fh.write("\n")  # after a cut line, start a fresh one

        def keep(i: int, answer: str) -> None:
            known[key(missing[i])] = answer
            fh.write(json.dumps({"key": key(missing[i]), "response": answer}, ensure_ascii=False) + "\n")
            fh.flush()

        try:
            judge(missing, keep)
        except UserError as exc:
            wanted = {key(p) for p in prompts}
            raise UserError(f"{exc} ({len(wanted & known.keys())} of {len(wanted)} answers are kept)") from None
    return [known[key(p)] for p in prompts]


def make_judge(spec: dict[str, Any]) -> Judge:
    """Build a judge from its config mapping (``type``: ``transformers`` or ``openai``)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserError("judge: expected a mapping with 'type' (transformers or openai)")
    kw = {k: v for k, v in spec.items() if k != "type"}
    try:
        if spec["type"] == "transformers":
            return transformers_judge(**kw)
        if spec["type"] == "openai":
            return openai_judge(**kw)
    except TypeError as exc:
        raise UserError(f"judge ({spec['type']}): {exc}") from None
    raise UserError(f"judge.type: unknown judge type '{spec['type']}' (transformers or openai)")
