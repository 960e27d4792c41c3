"""An OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, …) serving a model that reads images.

The standard library only (urllib): timeouts, retries with exponential backoff for what may pass (a
timeout, a refused connection, 408, 429, 5xx, garbage), and a clear reason when it does not. Finding
scores come from the server's `top_logprobs` of the answer's first token when it gives them, otherwise
from the answer's words (yes → 1.0, no → 0.0), and the draft says which (`score_source`).
"""
from __future__ import annotations

import base64
import json
import logging
import math
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from .base import Draft, DraftRequest, GenerationSettings, PermanentModelError, TransientModelError, split_report

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Garbage(Exception):
    """The server answered, but not with a usable completion (may pass on a retry)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class HttpBackend:
    def __init__(self, url: str, settings: GenerationSettings, *, model: str = "", api_key: str = "",
                 timeout: float = 120.0, retries: int = 3, backoff: float = 1.0, max_backoff: float = 30.0,
                 concurrency: int = 4, score_with: str = "auto", top_logprobs: int = 20):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"The server URL must start with http:// or https:// (got {url!r}).")
        if score_with not in ("auto", "logprobs", "text"):
            raise ValueError("score_with must be auto, logprobs or text.")
        if settings.guided_report:
            raise ValueError("Finding-guided drafting (guided_report) is for the janus backend; a server is asked "
                             "the report question as it is.")
        url = url.rstrip("/")
        self.endpoint = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.settings = settings
        self.model, self.api_key = model, api_key
        self.timeout, self.retries = float(timeout), int(retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.concurrency = max(1, int(concurrency))
        self.score_with, self.top_logprobs = score_with, int(top_logprobs)
        self._logprobs_supported: bool | None = None if score_with == "auto" else score_with == "logprobs"

    # -- the interface ---------------------------------------------------------------------------------------

    def generate(self, requests: list[DraftRequest], *, findings: list[str]) -> list[Draft]:
        if not requests:
            return []
        for i, request in enumerate(requests):
            if not all(request.images_png):
                raise PermanentModelError(f"Image {i + 1} is empty.")
        if len(requests) == 1 or self.concurrency == 1:
            return [self._draft(r, list(findings)) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self._draft(r, list(findings)), requests))

    def _draft(self, request: DraftRequest, findings: list[str]) -> Draft:
        started = time.perf_counter()
        # the primary (frontal) image first, then as many of the study's others as the model takes
        image_urls = ["data:image/png;base64," + base64.b64encode(png).decode("ascii")
                      for png in request.images_png[:self.settings.images]]
        question = self.settings.question(request.clinical_history)
        answer = self._complete(question, image_urls, max_tokens=self.settings.max_new_tokens, what="report")
        text = answer["text"].strip()
        found, impression = split_report(text)
        scores, sources = {}, set()
        if self.settings.score_findings:
            for finding in findings:
                scores[finding], source = self._score(finding, image_urls)
                sources.add(source)
        source = "none" if not sources else ("logprobs" if sources == {"logprobs"} else "text")
        return Draft(text=text, findings=found, impression=impression, finding_scores=scores,
                     generated_tokens=answer["tokens"], seconds=time.perf_counter() - started,
                     score_source=source, prompt=question)

    def _score(self, finding: str, image_urls: list[str]) -> tuple[float, str]:
        question = self.settings.finding_prompt(finding)
        if self._logprobs_supported is not False:
            answer = self._complete(question, image_urls, max_tokens=1, what=f"the {finding} question",
                                    logprobs=True)
            score = _yes_probability(answer["top_logprobs"])
            if score is not None:
                self._logprobs_supported = True
                return score, "logprobs"
            if self._logprobs_supported is None and answer["top_logprobs"] is None:
                logger.info("%s gives no logprobs: finding scores come from the answers' words", self.endpoint)
                self._logprobs_supported = False
            word = _yes_no(answer["text"])
            if word is not None:
                return word, "text"
        answer = self._complete(question, image_urls, max_tokens=8, what=f"the {finding} question")
        word = _yes_no(answer["text"])
        return (0.5 if word is None else word), "text"

    # -- one request, with retries ---------------------------------------------------------------------------

    def _complete(self, question: str, image_urls: list[str], *, max_tokens: int, what: str,
                  logprobs: bool = False) -> dict:
        body = {
            "messages": [{"role": "user", "content": [
                *({"type": "image_url", "image_url": {"url": url}} for url in image_urls),
                {"type": "text", "text": question},
            ]}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": False,
        }
        if self.model:
            body["model"] = self.model
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        data = json.dumps(body).encode("utf-8")
        attempts = self.retries + 1
        last_reason, garbage, retry_after = "", False, None
        for attempt in range(attempts):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
                if retry_after is not None:
                    delay = min(self.max_backoff, max(delay, retry_after))
                time.sleep(delay)
            try:
                return self._post_once(data, require_text=not logprobs)
            except _Retryable as exc:
                last_reason, garbage, retry_after = str(exc), False, exc.retry_after
            except _Garbage as exc:
                last_reason, garbage, retry_after = str(exc), True, None
            logger.warning("%s for %s, attempt %d of %d: %s", self.endpoint, what, attempt + 1, attempts,
                           last_reason)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if garbage:
            raise PermanentModelError(f"The model server gave no usable answer for {what} after {tries}: "
                                      f"{last_reason}")
        raise TransientModelError(f"The model server at {self.endpoint} failed for {what} after {tries}: "
                                  f"{last_reason}")

    def _post_once(self, data: bytes, *, require_text: bool) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code in RETRY_STATUS:
                raise _Retryable(f"HTTP {exc.code} {exc.reason}{detail}",
                                 retry_after=_retry_after(exc.headers.get("Retry-After"))) from exc
            if exc.code in (401, 403):
                raise PermanentModelError(f"The model server refused the credentials (HTTP {exc.code}){detail}; "
                                          "check the API key.") from exc
            if exc.code == 404:
                raise PermanentModelError(f"The model server has no {self.endpoint} or no model "
                                          f"{self.model!r} (HTTP 404){detail}.") from exc
            raise PermanentModelError(f"The model server rejected the request (HTTP {exc.code}){detail}.") from exc
        except TimeoutError as exc:
            raise _Retryable(f"no answer within {self.timeout:g} s") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"no answer within {self.timeout:g} s") from exc
            raise _Retryable(f"cannot connect: {reason}") from exc
        except (ConnectionError, OSError) as exc:  # reset, refused, broken pipe, …
            raise _Retryable(f"connection failed: {exc}") from exc
        return _parse(raw, require_text=require_text)


def _parse(raw: bytes, *, require_text: bool) -> dict:
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Garbage(f"the answer is not JSON ({raw[:80]!r})") from None
    if not isinstance(payload, dict):
        raise _Garbage("the answer is not a JSON object")
    if "error" in payload and not payload.get("choices"):
        raise _Garbage(f"the server reported an error: {str(payload['error'])[:200]}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Garbage("the answer has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if content is None:
        content = choice.get("text")
    if not isinstance(content, str):
        content = ""
    if require_text and not content.strip():
        raise _Garbage("the answer's text is empty")
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    tokens = usage.get("completion_tokens")
    if not isinstance(tokens, int):
        tokens = len(content.split())
    return {"text": content, "tokens": tokens, "top_logprobs": _top_logprobs(choice)}


def _top_logprobs(choice: dict) -> list[tuple[str, float]] | None:
    """The first generated token's alternatives as (token, logprob), or None when the server gave none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        pairs = [(a.get("token"), a.get("logprob")) for a in first.get("top_logprobs") or [] if isinstance(a, dict)]
        if first.get("token") is not None:
            pairs.append((first.get("token"), first.get("logprob")))
        pairs = [(t, float(lp)) for t, lp in pairs if isinstance(t, str) and isinstance(lp, (int, float))]
        return pairs or None
    top = logprobs.get("top_logprobs")  # the legacy completions shape: [{token: logprob}, ...]
    if isinstance(top, list) and top and isinstance(top[0], dict):
        return [(t, float(lp)) for t, lp in top[0].items() if isinstance(lp, (int, float))] or None
    return None


def _yes_probability(pairs: list[tuple[str, float]] | None) -> float | None:
    if not pairs:
        return None
    seen, p_yes, p_no = set(), 0.0, 0.0
    for token, logprob in pairs:
        if token in seen:
            continue
        seen.add(token)
        word = token.strip().strip(".,!").lower()
        if word == "yes":
            p_yes += math.exp(logprob)
        elif word == "no":
            p_no += math.exp(logprob)
    if p_yes + p_no <= 0:
        return None
    return p_yes / (p_yes + p_no)


def _yes_no(text: str) -> float | None:
    words = text.strip().lower().lstrip("*_\"' ").split()
    if not words:
        return None
    first = words[0].strip(".,!:;*_\"'")
    return 1.0 if first == "yes" else 0.0 if first == "no" else None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(500).decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        body = ""
    return f": {body[:200]}" if body else ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
