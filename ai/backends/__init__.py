"""Model backends (no Django): Janus through transformers, or an OpenAI-compatible server; one interface.

    backend = get_backend("janus", path="/models/janus-pro-cxr", url=None, settings=GenerationSettings())
    drafts = backend.generate([DraftRequest(image_png=png)], findings=["pneumothorax"])
"""
from __future__ import annotations

import gc
import json
import os
import threading

from .base import (
    DEFAULT_PROMPT,
    ONE_IMAGE_ONLY,
    Backend,
    CheckpointInfo,
    Draft,
    DraftRequest,
    GenerationSettings,
    ModelError,
    PermanentModelError,
    TransientModelError,
    settings_key,
    split_report,
)

__all__ = [
    "DEFAULT_PROMPT", "ONE_IMAGE_ONLY", "Backend", "CheckpointInfo", "Draft", "DraftRequest", "GenerationSettings",
    "ModelError",
    "PermanentModelError", "TransientModelError", "split_report", "get_backend", "inspect_checkpoint",
    "clear_backends", "KINDS",
]

KINDS = ("janus", "http")

_cache: dict[tuple, Backend] = {}
_lock = threading.Lock()


def get_backend(kind: str, *, path: str | None = None, url: str | None = None,
                settings: GenerationSettings | None = None, **options) -> Backend:
    """The process's backend for these arguments, made on first use and kept.

    A janus backend loads its model lazily, at its first draft, so a backend made before a worker
    forks holds nothing heavy; the key includes the process id, so a forked child never reuses its
    parent's model. One local model per process: making a janus backend for another checkpoint lets
    go of the previous one.
    janus options: device ("auto", "cpu", "cuda"), dtype ("auto", "float32", "bfloat16"),
    quantize ("none", "int8"), threads, batch_size.
    http options: model, api_key, timeout, retries, backoff, concurrency, score_with ("auto", "logprobs", "text").
    """
    settings = settings or GenerationSettings()
    if kind not in KINDS:
        raise PermanentModelError(f"Unknown backend “{kind}”; use one of {', '.join(KINDS)}.")
    key = (os.getpid(), kind, path, url, settings_key(settings), json.dumps(options, sort_keys=True, default=str))
    with _lock:
        backend = _cache.get(key)
        if backend is not None:
            return backend
        for old in [k for k in _cache if k[0] != os.getpid()]:
            del _cache[old]
        if kind == "janus":
            if not path:
                raise PermanentModelError("The janus backend needs the path of a checkpoint folder.")
            from .janus import JanusBackend

            for old in [k for k in _cache if k[1] == "janus"]:
                del _cache[old]
            gc.collect()
            backend = _make(JanusBackend, path, settings, options)
        else:
            if not url:
                raise PermanentModelError("The http backend needs the server's URL.")
            from .http import HttpBackend

            backend = _make(HttpBackend, url, settings, options)
        _cache[key] = backend
        return backend


def _make(cls, where, settings, options):
    try:
        return cls(where, settings, **options)
    except (TypeError, ValueError) as exc:
        raise PermanentModelError(f"The backend's options were refused: {exc}") from exc


def clear_backends() -> None:
    """Forget every backend of this process (tests; a worker that changes models)."""
    with _lock:
        _cache.clear()
    gc.collect()


def inspect_checkpoint(path: str) -> CheckpointInfo:
    """sha256 of the weights, parameter count and config summary of a Janus folder, or PermanentModelError."""
    from .janus import inspect_checkpoint as inspect

    return inspect(path)
