"""The requests of the gate, sent with the ``openai`` client (what users of vLLM's server send).

Startup alone never counts: a stage passes only when ``GET /v1/models`` answers 200 and a text
request answers 200 with non-empty output (and a text+image request, for a vision-language model).
The capacity probes check that the settings asked for held: the whole context window is usable and
one token more is refused, and ``max-num-seqs`` requests at once are all answered.
Each probe returns a ``Check`` and never raises: an error is the check's finding.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ascend_overlay.core.vocabulary import Word
from ascend_overlay.smoke.image import QUESTION, data_url, red_square_png


class CheckStatus(Word):
    """How one request of the gate ended (and a cell of the validation matrix)."""

    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"               # does not apply to this model (no chat template, text-only)
    SKIPPED = "skipped"                  # not sent (--no-capacity, the server exited, nothing to ask)
    NOT_REQUESTED = "not requested"      # validation matrix: the stage was not asked for

TEXT_PROMPT = "The capital of France is"
CHAT_PROMPT = "What is the capital of France? Answer in one word."


@dataclass
class Check:
    name: str
    title: str
    status: CheckStatus
    detail: str = ""
    evidence: str = ""
    seconds: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (CheckStatus.PASS, CheckStatus.NOT_APPLICABLE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TITLES = {
    "models": "GET /v1/models",
    "text": "text request (POST /v1/completions)",
    "chat": "chat request (POST /v1/chat/completions)",
    "image": "text+image request (chat, image_url)",
    "stream": "streamed request (TTFT, decode speed)",
    "context": "whole context window (max-model-len)",
    "concurrency": "concurrent requests (max-num-seqs)",
}


def not_applicable(name: str, why: str) -> Check:
    return Check(name, TITLES[name], CheckStatus.NOT_APPLICABLE, why)


def skipped(name: str, why: str) -> Check:
    return Check(name, TITLES[name], CheckStatus.SKIPPED, why)


def describe_error(exc: BaseException) -> str:
    """An API error as the server said it (status and body), anything else by type and message."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if status is not None:
        message = body.get("message") if isinstance(body, dict) else None
        if message is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
        return f"HTTP {status}: {message or exc}"
    return f"{type(exc).__name__}: {exc}"


def _clip(text: str, width: int = 120) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


class Prober:
    """One client for one server; ``dummy`` asks for ``ignore_eos`` (random weights may stop at once)."""

    def __init__(self, port: int, api_key: str, timeout: float, dummy: bool) -> None:
        from openai import OpenAI

        self.port = port
        self.api_key = api_key
        self.client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=api_key, timeout=timeout,
                             max_retries=0)
        self.timeout = timeout
        self.dummy = dummy
        self.model_id = ""

    def _extra(self) -> dict[str, Any]:
        return {"ignore_eos": True} if self.dummy else {}

    def models(self) -> Check:
        started = time.monotonic()
        try:
            raw = self.client.models.with_raw_response.list()
            page = raw.parse()
        except Exception as exc:
            return Check("models", TITLES["models"], CheckStatus.FAIL, describe_error(exc), seconds=time.monotonic() - started)
        if raw.status_code != 200 or not page.data:
            return Check("models", TITLES["models"], CheckStatus.FAIL, f"HTTP {raw.status_code}, {len(page.data)} models",
                         seconds=time.monotonic() - started)
        model = page.data[0]
        self.model_id = model.id
        max_len = getattr(model, "max_model_len", None)
        return Check("models", TITLES["models"], CheckStatus.PASS, f"serves {model.id}",
                     f"HTTP 200: id={model.id} max_model_len={max_len}", time.monotonic() - started,
                     {"id": model.id, "max_model_len": max_len})

    def text(self, max_tokens: int = 16) -> Check:
        started = time.monotonic()
        try:
            raw = self.client.completions.with_raw_response.create(
                model=self.model_id, prompt=TEXT_PROMPT, max_tokens=max_tokens, temperature=0,
                extra_body=self._extra())
            reply = raw.parse()
        except Exception as exc:
            return Check("text", TITLES["text"], CheckStatus.FAIL, describe_error(exc), seconds=time.monotonic() - started)
        output = reply.choices[0].text if reply.choices else ""
        return self._judge("text", raw.status_code, output, reply.usage, started,
                           {"prompt": TEXT_PROMPT, "max_tokens": max_tokens, "temperature": 0, **self._extra()},
                           reply.system_fingerprint)

    def chat(self, max_tokens: int = 16) -> Check:
        messages = [{"role": "user", "content": CHAT_PROMPT}]
        return self._chat("chat", messages, max_tokens)

    def image(self, max_tokens: int = 16) -> Check:
        return self._chat("image", image_messages(), max_tokens)

    def _chat(self, name: str, messages: list[dict[str, Any]], max_tokens: int) -> Check:
        started = time.monotonic()
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.model_id, messages=messages, max_tokens=max_tokens, temperature=0,
                extra_body=self._extra())
            reply = raw.parse()
        except Exception as exc:
            return Check(name, TITLES[name], CheckStatus.FAIL, describe_error(exc), seconds=time.monotonic() - started)
        output = (reply.choices[0].message.content or "") if reply.choices else ""
        request = {"messages": _redact_images(messages), "max_tokens": max_tokens, "temperature": 0,
                   **self._extra()}
        return self._judge(name, raw.status_code, output, reply.usage, started, request, reply.system_fingerprint)

    def _judge(self, name: str, status: int, output: str, usage: Any, started: float, request: dict[str, Any],
               fingerprint: str | None) -> Check:
        seconds = time.monotonic() - started
        tokens = getattr(usage, "completion_tokens", 0) or 0
        data = {"request": request, "output": output, "completion_tokens": tokens,
                "prompt_tokens": getattr(usage, "prompt_tokens", None), "system_fingerprint": fingerprint}
        evidence = f"HTTP {status}: {tokens} tokens, output {_clip(output)!r}"
        if status != 200:
            return Check(name, TITLES[name], CheckStatus.FAIL, f"HTTP {status}", evidence, seconds, data)
        if not output:
            return Check(name, TITLES[name], CheckStatus.FAIL, "HTTP 200 but the output is empty", evidence, seconds, data)
        return Check(name, TITLES[name], CheckStatus.PASS, "HTTP 200, non-empty output", evidence, seconds, data)

    def stream(self, max_tokens: int = 32) -> Check:
        """One streamed request of a fixed length: time to first token and decode speed."""
        started = time.monotonic()
        first = None
        pieces: list[str] = []
        usage = None
        try:
            events = self.client.completions.create(
                model=self.model_id, prompt=TEXT_PROMPT, max_tokens=max_tokens, temperature=0, stream=True,
                stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
            for event in events:
                if event.choices and event.choices[0].text:
                    if first is None:
                        first = time.monotonic() - started
                    pieces.append(event.choices[0].text)
                if event.usage is not None:
                    usage = event.usage
        except Exception as exc:
            return Check("stream", TITLES["stream"], CheckStatus.FAIL, describe_error(exc), seconds=time.monotonic() - started)
        total = time.monotonic() - started
        tokens = getattr(usage, "completion_tokens", 0) or 0
        if first is None or tokens == 0:
            return Check("stream", TITLES["stream"], CheckStatus.FAIL, "the stream carried no tokens", seconds=total)
        decode = (tokens - 1) / (total - first) if tokens > 1 and total > first else None
        data = {"ttft_s": round(first, 4), "total_s": round(total, 4), "completion_tokens": tokens,
                "decode_tokens_per_s": round(decode, 1) if decode else None}
        evidence = (f"{tokens} tokens streamed; first after {first * 1000:.0f} ms; "
                    f"decode {data['decode_tokens_per_s']} tokens/s")
        return Check("stream", TITLES["stream"], CheckStatus.PASS, "tokens arrived as a stream", evidence, total, data)

    def _token_ids(self, count: int) -> list[int]:
        """``count`` prompt token ids of real text, from the server's own tokenizer (``POST /tokenize``)."""
        body = json.dumps({"model": self.model_id, "prompt": TEXT_PROMPT + " Paris, and the capital of Italy is Rome.",
                           "add_special_tokens": False}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/tokenize", data=body,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=self.timeout) as resp:
            ids = json.loads(resp.read())["tokens"]
        return (ids * (count // len(ids) + 1))[:count]

    def context(self, max_model_len: int, max_tokens: int = 4) -> Check:
        """The served window is usable to its last token, and a prompt one token longer is refused."""
        started = time.monotonic()
        fill = max_model_len - max_tokens
        try:
            ids = self._token_ids(max_model_len + 1)
            reply = self.client.completions.create(model=self.model_id, prompt=ids[:fill], max_tokens=max_tokens,
                                                   temperature=0, extra_body={"ignore_eos": True})
        except Exception as exc:
            return Check("context", TITLES["context"], CheckStatus.FAIL, f"a {fill}-token prompt failed: {describe_error(exc)}",
                         seconds=time.monotonic() - started)
        used = (reply.usage.prompt_tokens, reply.usage.completion_tokens)
        data = {"max_model_len": max_model_len, "prompt_tokens": used[0], "completion_tokens": used[1]}
        if used != (fill, max_tokens):
            return Check("context", TITLES["context"], CheckStatus.FAIL,
                         f"asked {fill}+{max_tokens} tokens, got {used[0]}+{used[1]}", seconds=time.monotonic() - started,
                         data=data)
        try:
            self.client.completions.create(model=self.model_id, prompt=ids, max_tokens=1, temperature=0)
            over = "accepted"
        except Exception as exc:
            over = describe_error(exc)
        data["over_limit"] = over
        seconds = time.monotonic() - started
        evidence = (f"{fill} prompt + {max_tokens} generated tokens answered; a {max_model_len + 1}-token prompt: "
                    f"{_clip(over, 160)}")
        if not over.startswith("HTTP 400"):
            return Check("context", TITLES["context"], CheckStatus.FAIL, "a request longer than max-model-len was not refused",
                         evidence, seconds, data)
        return Check("context", TITLES["context"], CheckStatus.PASS, f"{max_model_len} tokens usable, {max_model_len + 1} refused",
                     evidence, seconds, data)

    def concurrency(self, count: int, max_tokens: int = 4) -> Check:
        started = time.monotonic()

        def one(i: int) -> str | None:
            try:
                reply = self.client.completions.create(model=self.model_id, prompt=f"{TEXT_PROMPT} {i}",
                                                       max_tokens=max_tokens, temperature=0,
                                                       extra_body={"ignore_eos": True})
                return None if reply.usage.completion_tokens == max_tokens else "short answer"
            except Exception as exc:
                return describe_error(exc)

        with ThreadPoolExecutor(max_workers=count) as pool:
            errors = [e for e in pool.map(one, range(count)) if e]
        seconds = time.monotonic() - started
        evidence = f"{count - len(errors)}/{count} concurrent requests answered in {seconds:.2f} s"
        if errors:
            return Check("concurrency", TITLES["concurrency"], CheckStatus.FAIL, errors[0], evidence, seconds,
                         {"requests": count, "failed": len(errors)})
        return Check("concurrency", TITLES["concurrency"], CheckStatus.PASS, f"{count} at once", evidence, seconds,
                     {"requests": count, "failed": 0})


def image_messages() -> list[dict[str, Any]]:
    """The text+image request's messages, in the OpenAI format vLLM serves (image first, then the question)."""
    content = [{"type": "image_url", "image_url": {"url": data_url(red_square_png())}},
               {"type": "text", "text": QUESTION}]
    return [{"role": "user", "content": content}]


def _redact_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request as recorded: a data URL is replaced by what it holds (the JSON stays readable)."""
    text = json.dumps(messages)
    for message in messages:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                text = text.replace(url, f"data:image/png;base64,<{len(url)} characters: a red square, 224x224>")
    return json.loads(text)
