"""Janus-Pro through transformers: a local checkpoint, offline, one model per process, batched greedy drafts.

The image comes first in every prompt, so the report question and the yes/no finding questions about
one image share their first few hundred tokens (system prompt, role, the image's tokens). The image is
encoded and that shared prefix prefilled once per image; the report and every finding question then
continue from copies of its key/value cache in one batched pass, and the report rows go on decoding
greedily. On a CPU the prefill of a real checkpoint costs seconds, so this is most of the speed.
"""
from __future__ import annotations

import inspect
import io
import logging
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from .base import (
    ONE_IMAGE_ONLY,
    CheckpointInfo,
    Draft,
    DraftRequest,
    GenerationSettings,
    PermanentModelError,
    TransientModelError,
    split_report,
)

logger = logging.getLogger(__name__)

YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")
# Above this size a CPU model is bound by memory bytes and runs int8 decoding with a bfloat16 prefill
# (bench/ai_cpu.py: 2.9× the float32 tokens/s on two cores); below it float32 is as fast and exact.
CPU_BF16_MIN_PARAMETERS = 200_000_000


def _offline() -> None:
    # No download at run time, ever: transformers and huggingface_hub read these before any network call.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Timing:
    """Where the seconds of the last batch went (for the benchmark and the logs)."""

    images: int = 0
    prefill_seconds: float = 0.0     # image encoding, the shared prefix and the report question
    questions_seconds: float = 0.0   # the yes/no finding questions after the prefix
    decode_seconds: float = 0.0      # greedy decoding after the first token
    decode_steps: int = 0
    generated_tokens: list[int] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        return self.decode_seconds / self.decode_steps if self.decode_steps else 0.0


class JanusBackend:
    """`generate` drafts a batch; the model is loaded on first use (after a worker's fork), then kept."""

    def __init__(self, path: str | None, settings: GenerationSettings, *, device: str = "auto",
                 dtype: str = "auto", quantize: str = "auto", threads: int | None = None,
                 batch_size: int | None = None, question_rows: int | None = None, ignore_eos: bool = False):
        if quantize not in ("auto", "none", "int8"):
            raise ValueError("quantize must be 'auto', 'none' or 'int8'.")
        if settings.images != 1:  # and the shared-prefix cache below is one image's
            raise ValueError(ONE_IMAGE_ONLY)
        self.path = path
        self.settings = settings
        self.device_option, self.dtype_option, self.quantize = device, dtype, quantize
        self.threads = threads
        self.batch_size_option = batch_size
        self.ignore_eos = ignore_eos  # benchmarks only: always decode max_new_tokens
        self.question_rows_option = question_rows
        self.model = None
        self.processor = None
        self.device = None
        self.dtype = None
        self.last_timing = Timing()
        self._lock = threading.RLock()

    @classmethod
    def from_model(cls, model, processor, settings: GenerationSettings, **options) -> JanusBackend:
        """Wrap a model already in memory (the benchmark, tests); it is prepared the same way as a loaded one."""
        backend = cls(None, settings, **options)
        with backend._lock:
            backend._prepare(model, processor)
        return backend

    # -- loading ---------------------------------------------------------------------------------------------

    def load(self) -> None:
        with self._lock:
            if self.model is not None:
                return
            _offline()
            path = self.path
            if not path or not os.path.isdir(path):
                raise PermanentModelError(f"There is no checkpoint folder at {path!r}.")
            if not os.path.isfile(os.path.join(path, "config.json")):
                raise PermanentModelError(f"{path} has no config.json: it is not a transformers checkpoint.")
            import torch
            from transformers import AutoProcessor, JanusForConditionalGeneration

            device = self._pick_device(torch)
            try:
                processor = AutoProcessor.from_pretrained(path, local_files_only=True)
                model = JanusForConditionalGeneration.from_pretrained(
                    path, local_files_only=True, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
            except Exception as exc:  # safetensors, tokenizers and torch each raise their own kinds
                if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
                    raise TransientModelError(f"Not enough memory to load the model at {path}: {exc}") from exc
                raise PermanentModelError(f"The checkpoint at {path} could not be loaded: {exc}") from exc
            self._prepare(model, processor, device=device)

    def _pick_device(self, torch):
        if self.device_option == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device_option)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise PermanentModelError("The model is configured for a GPU (cuda) but this worker has none.")
        return device

    def _prepare(self, model, processor, *, device=None) -> None:
        import torch

        for name in ("image_token", "image_start_token", "image_end_token", "num_image_tokens", "tokenizer",
                     "image_processor"):
            if not hasattr(processor, name):
                raise PermanentModelError(f"The checkpoint's processor is not a Janus processor (no {name}).")
        device = device or self._pick_device(torch)
        if device.type == "cpu":
            torch.set_num_threads(self.threads or available_cores())
        n_parameters = sum(p.numel() for p in model.parameters())
        if self.quantize == "auto":
            # Measured with bench/ai_cpu.py on two cores: int8 decoding 2.9× float32's tokens/s, bf16 1.3×.
            large = device.type == "cpu" and n_parameters >= CPU_BF16_MIN_PARAMETERS and self.dtype_option == "auto"
            self.quantize = "int8" if large and _int8_supported(torch) else "none"
        dtype = self._pick_dtype(torch, device, n_parameters)
        if self.quantize == "int8":
            if device.type != "cpu":
                raise PermanentModelError("int8 weights are for decoding on a CPU; on a GPU use quantize='none'.")
            model = _quantize_int8(model.to(device=device).eval())  # from the float32 weights, before rounding
        model = model.to(device=device, dtype=dtype).eval()
        self.model, self.processor, self.device, self.dtype = model, processor, device, dtype
        tokenizer = processor.tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        eos = getattr(model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self._image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
        self._yes_ids = _single_token_ids(tokenizer, YES_WORDS)
        self._no_ids = _single_token_ids(tokenizer, NO_WORDS)
        base = model.model
        self._cache_kwarg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self._system_prompt = ""
        if getattr(processor, "use_default_system_prompt", False):
            from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT

            self._system_prompt = DEFAULT_SYSTEM_PROMPT
        logger.info("Janus model ready: %s parameters on %s in %s%s", f"{n_parameters:,}", device, dtype,
                    " with int8 linear layers" if self.quantize == "int8" else "")

    def _pick_dtype(self, torch, device, n_parameters: int):
        choice = self.dtype_option
        if choice == "auto":
            if device.type == "cuda":
                return torch.bfloat16
            if self.quantize == "int8":
                return torch.bfloat16 if cpu_has_bf16(torch) else torch.float32
            return torch.bfloat16 if n_parameters >= CPU_BF16_MIN_PARAMETERS and cpu_has_bf16(torch) \
                else torch.float32
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[choice]
        except KeyError:
            raise ValueError(f"Unknown dtype {choice!r}; use auto, float32, bfloat16 or float16.") from None

    @property
    def batch_size(self) -> int:
        if self.batch_size_option:
            return self.batch_size_option
        return 16 if self.device is not None and self.device.type == "cuda" else 4

    @property
    def question_rows(self) -> int:
        """Finding-question rows per forward pass; each holds a copy of its image's cached keys and values."""
        if self.question_rows_option:
            return self.question_rows_option
        return 64 if self.device is not None and self.device.type == "cuda" else 12

    # -- generation ------------------------------------------------------------------------------------------

    def generate(self, requests: list[DraftRequest], *, findings: list[str]) -> list[Draft]:
        if not requests:
            return []
        images = [_read_image(r.image_png, i) for i, r in enumerate(requests)]
        if self.model is None:
            self.load()
        import torch

        drafts: list[Draft] = []
        with self._lock, torch.inference_mode():
            total = Timing()
            for start in range(0, len(requests), self.batch_size):
                chunk = slice(start, start + self.batch_size)
                try:
                    drafts.extend(self._generate_chunk(requests[chunk], images[chunk], list(findings)))
                except torch.cuda.OutOfMemoryError as exc:
                    torch.cuda.empty_cache()
                    raise TransientModelError(f"The GPU ran out of memory: {exc}") from exc
                except RuntimeError as exc:
                    if "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower():
                        raise TransientModelError(f"Out of memory while drafting: {exc}") from exc
                    raise PermanentModelError(f"The model could not process the image: {exc}") from exc
                t = self.last_timing
                total.images += t.images
                total.prefill_seconds += t.prefill_seconds
                total.questions_seconds += t.questions_seconds
                total.decode_seconds += t.decode_seconds
                total.decode_steps += t.decode_steps
                total.generated_tokens += t.generated_tokens
            self.last_timing = total
        return drafts

    def _pixel_values(self, images):
        import torch

        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return torch.as_tensor(pixels).to(device=self.device, dtype=self.dtype)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of one Janus turn, the image token expanded as the processor does."""
        p = self.processor
        image = p.image_start_token + p.image_token * p.num_image_tokens + p.image_end_token
        text = self._system_prompt + text.replace(p.image_token, image)
        return list(p.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _generate_chunk(self, requests: list[DraftRequest], images, findings: list[str]) -> list[Draft]:
        import torch

        settings, model, base = self.settings, self.model, self.model.model
        t0 = time.perf_counter()
        n_images = len(requests)
        scored = findings if settings.score_findings else []
        questions = [settings.question(r.clinical_history) for r in requests]
        finding_ids = [self.prompt_ids(settings.chat(settings.finding_prompt(f))) for f in scored]
        rows = [self.prompt_ids(settings.chat(q)) for q in questions] + finding_ids

        # The shared prefix: every row starts with the same tokens up to and including the image.
        prefix = _common_prefix(rows)
        prefix = min(prefix, min(len(r) for r in rows) - 1)
        image_positions = [j for j, t in enumerate(rows[0]) if t == self._image_token_id]
        if not image_positions or image_positions[-1] >= prefix:
            raise PermanentModelError("The prompt does not start with the image; check the role settings.")

        device = self.device
        prefix_ids = torch.tensor([rows[0][:prefix]] * n_images, device=device)
        out = base(input_ids=prefix_ids, pixel_values=self._pixel_values(images), use_cache=True)
        cache = _cache_of(out)
        t1 = time.perf_counter()

        # The finding questions continue copies of the prefix's cache, a bounded number of rows at a time
        # (each row holds a copy of the image's keys and values).
        scores = None
        if scored:
            kv = _kv(cache)
            per_pass = max(1, self.question_rows // len(scored))
            parts = []
            for first in range(0, n_images, per_pass):
                images_here = list(range(first, min(n_images, first + per_pass)))
                selected = [i for i in images_here for _ in scored]
                question_rows = [q for _ in images_here for q in finding_ids]
                copy = _cache_from(kv, torch.tensor(selected, device=device), self.model.config)
                logits, _, _, _ = self._continue(copy, prefix, question_rows)
                parts.append(self._yes_scores(logits).view(len(images_here), len(scored)))
            scores = torch.cat(parts)
        t2 = time.perf_counter()

        # Finding-guided drafting: each image's report question names the findings the model has just seen in it.
        report_rows = rows[:n_images]
        if settings.guided_report and scored:
            said_yes = (scores >= settings.guide_threshold).tolist()
            present = [[f for f, yes in zip(scored, row) if yes] for row in said_yes]
            questions = [settings.guided_question(q, found) for q, found in zip(questions, present)]
            report_rows = [self.prompt_ids(settings.chat(q)) for q in questions]
            if any(r[:prefix] != rows[0][:prefix] or len(r) <= prefix for r in report_rows):
                raise PermanentModelError("The guide template changes the tokens before the question; "
                                          "it must come after the image.")

        # The report questions continue the prefix's cache itself (one row per image), then decode.
        logits, cache, mask, lengths = self._continue(cache, prefix, report_rows)
        width = mask.shape[1] - prefix
        t2b = time.perf_counter()
        budget = settings.max_new_tokens
        mask = torch.cat([mask, torch.ones(n_images, budget, dtype=mask.dtype, device=device)], dim=1)
        width0 = prefix + width
        next_pos = prefix + lengths
        token = logits.argmax(-1)
        out_tokens = torch.full((n_images, budget), self._pad_id, dtype=torch.long, device=device)
        eos = torch.tensor(sorted(self._eos_ids), device=device) if self._eos_ids and not self.ignore_eos else None
        done = torch.zeros(n_images, dtype=torch.bool, device=device)
        steps = 0
        for step in range(budget):
            if eos is not None:
                done = done | torch.isin(token, eos)
                out_tokens[:, step] = torch.where(done, torch.full_like(token, -1), token)
                if step % 8 == 7 and bool(done.all()):
                    break
            else:
                out_tokens[:, step] = token
            if step == budget - 1:
                break
            feed = token if eos is None else torch.where(done, torch.full_like(token, self._pad_id), token)
            out = base(input_ids=feed[:, None], attention_mask=mask[:, :width0 + step + 1],
                       position_ids=(next_pos + step)[:, None], use_cache=True, **{self._cache_kwarg: cache})
            cache = _cache_of(out)
            token = model.lm_head(out.last_hidden_state[:, -1]).argmax(-1)
            steps += 1
        generated = []
        for row in out_tokens.tolist():
            ended = row.index(-1) if -1 in row else len(row)
            generated.append(row[:ended])
        t3 = time.perf_counter()

        self.last_timing = Timing(images=n_images, prefill_seconds=(t1 - t0) + (t2b - t2),
                                  questions_seconds=t2 - t1, decode_seconds=t3 - t2b, decode_steps=steps,
                                  generated_tokens=[len(g) for g in generated])
        share = (t3 - t0) / n_images
        drafts = []
        for i in range(n_images):
            text = self.processor.tokenizer.decode(generated[i], skip_special_tokens=True).strip()
            if not text and not self.ignore_eos:
                raise PermanentModelError("The model produced an empty report for this image.")
            found, impression = split_report(text)
            finding_scores = {f: float(scores[i, k]) for k, f in enumerate(scored)} if scored else {}
            drafts.append(Draft(text=text, findings=found, impression=impression, finding_scores=finding_scores,
                                generated_tokens=len(generated[i]), seconds=share,
                                score_source="model" if scored else "none", prompt=questions[i]))
        return drafts

    def _continue(self, cache, prefix: int, rows: list[list[int]]):
        """Run the rows' tokens after the shared prefix (right-padded); logits at each row's last token."""
        import torch

        device = self.device
        suffixes = [r[prefix:] for r in rows]
        width = max(len(s) for s in suffixes)
        lengths = torch.tensor([len(s) for s in suffixes], device=device)
        ids = torch.tensor([s + [self._pad_id] * (width - len(s)) for s in suffixes], device=device)
        mask = torch.cat([torch.ones(len(rows), prefix, dtype=torch.long, device=device),
                          (torch.arange(width, device=device)[None, :] < lengths[:, None]).long()], dim=1)
        positions = prefix + torch.arange(width, device=device)[None, :].expand(len(rows), width)
        out = self.model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                               **{self._cache_kwarg: cache})
        last = out.last_hidden_state[torch.arange(len(rows), device=device), lengths - 1]
        return self.model.lm_head(last).float(), _cache_of(out), mask, lengths

    def _yes_scores(self, logits):
        """P(yes) / (P(yes) + P(no)) of the next token, over the spellings of yes and no the tokenizer has."""
        import torch

        probs = torch.softmax(logits, dim=-1)
        p_yes = probs[:, self._yes_ids].sum(-1) if self._yes_ids else torch.zeros(len(probs))
        p_no = probs[:, self._no_ids].sum(-1) if self._no_ids else torch.zeros(len(probs))
        total = p_yes + p_no
        return torch.where(total > 0, p_yes / total.clamp_min(1e-30), torch.full_like(total, 0.5)).cpu()


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _kv(cache) -> list[tuple]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def _cache_from(kv, rows, config):
    """A new cache holding the given batch rows of another's keys and values (the original is untouched)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config.text_config)
    for layer, (keys, values) in enumerate(kv):
        cache.update(keys[rows], values[rows], layer)
    return cache


def _common_prefix(rows: list[list[int]]) -> int:
    first, n = rows[0], min(len(r) for r in rows)
    for j in range(n):
        token = first[j]
        if any(r[j] != token for r in rows):
            return j
    return n


def _single_token_ids(tokenizer, words) -> list[int]:
    """Ids of the answer spellings that are one token, with and without a leading space."""
    ids = set()
    for word in words:
        for text in (f" {word}", word):
            encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(encoded) == 1:
                ids.add(encoded[0])
    return sorted(ids)


def _read_image(data: bytes, index: int):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise PermanentModelError(f"Image {index + 1} is empty.")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise PermanentModelError(f"Image {index + 1} could not be read as a picture: {exc}") from exc
    if min(image.size) < 8:
        raise PermanentModelError(f"Image {index + 1} is too small ({image.size[0]}×{image.size[1]} pixels).")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low or 1.0) * 255.0
        image = Image.fromarray(array.round().astype(np.uint8))
    return image.convert("RGB")


def _int8_supported(torch) -> bool:
    return hasattr(torch.ops.quantized, "linear_dynamic") or hasattr(torch, "_weight_int8pack_mm")


def cpu_has_bf16(torch) -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX-512 BF16 / AMX); without it oneDNN emulates them,
    about 30x slower than float32 on an AVX2-only EPYC (measured), so callers fall back to float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_INT8_CLASS = None
# Rows at or below which the int8 weights are used (decoding); above it the full-precision copy (the prefill's
# hundreds of rows): bfloat16 where the CPU has bf16 matrix units, float32 where it would only emulate them.
INT8_MAX_ROWS = 8


def _int8_linear_class():
    """nn.Linear with int8 weights (one scale per output channel) for decoding, and a bf16 copy for prefill.

    Decoding a token reads every weight once, so it is bound by memory bytes: int8 reads a quarter of
    float32. The kernel is fbgemm's dynamic int8 matrix product (the activation row is quantized per
    token on the fly); where the quantized engine is missing, PyTorch's weight-only int8 kernel. The
    prefill multiplies hundreds of rows at once and is bound by arithmetic, where bfloat16 on the CPU's
    matrix units wins and keeps full precision; both copies cost 3 bytes per weight, less than float32's 4.
    On a CPU without bf16 units (AVX2 only) the prefill copy is float32 (5 bytes per weight in all): there an
    emulated bf16 prefill took 4x the float32 baseline's (bench/ai_cpu.py, 2026-11-28).
    """
    global _INT8_CLASS
    if _INT8_CLASS is not None:
        return _INT8_CLASS
    import torch

    class _Int8Linear(torch.nn.Module):
        def __init__(self, linear: torch.nn.Linear, prefill_dtype):
            super().__init__()
            weight = linear.weight.detach().float()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            scale = weight.abs().amax(dim=1).clamp_min(1e-8) / 127.0
            self.packed = None
            try:
                with warnings.catch_warnings():  # quantized tensors are "deprecated" but fbgemm still runs them
                    warnings.simplefilter("ignore")
                    quantized = torch.quantize_per_channel(weight, scale.double(),
                                                           torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
                    self.packed = torch.ops.quantized.linear_prepack(quantized, None)
                self.register_buffer("qweight", None)
            except (RuntimeError, AttributeError, NotImplementedError):
                self.register_buffer("qweight", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale.to(torch.bfloat16))
            self.register_buffer("weight", linear.weight.detach().to(prefill_dtype))
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(prefill_dtype))

        def forward(self, x):
            shape = x.shape
            rows = x.reshape(-1, shape[-1])
            if rows.shape[0] > INT8_MAX_ROWS:
                out = torch.nn.functional.linear(rows.to(self.weight.dtype), self.weight, self.bias)
            else:
                if self.packed is not None:
                    out = torch.ops.quantized.linear_dynamic(rows.float().contiguous(), self.packed, False)
                else:
                    out = torch._weight_int8pack_mm(rows.to(torch.bfloat16).contiguous(), self.qweight, self.scale)
                if self.bias is not None:
                    out = out + self.bias
            return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

        def _apply(self, fn, recurse=True):
            # Casting the model to another dtype leaves the int8 weights and the bf16 copy as they are.
            kept = {name: getattr(self, name) for name in ("qweight", "scale", "weight", "bias")}
            super()._apply(fn, recurse)
            for name, tensor in kept.items():
                setattr(self, name, tensor)
            return self

    _INT8_CLASS = _Int8Linear
    return _INT8_CLASS


def _quantize_int8(model):
    """The language model's linear layers and the output head get int8 weights (see _int8_linear_class)."""
    import torch

    cls = _int8_linear_class()
    prefill_dtype = torch.bfloat16 if cpu_has_bf16(torch) else torch.float32
    targets = [(name, module) for name, module in model.model.language_model.named_modules()
               if isinstance(module, torch.nn.Linear)]
    for name, module in targets:
        parent = model.model.language_model.get_submodule(name.rsplit(".", 1)[0]) if "." in name \
            else model.model.language_model
        setattr(parent, name.rsplit(".", 1)[-1], cls(module, prefill_dtype))
    model.lm_head = cls(model.lm_head, prefill_dtype)
    return model


# -- checking a checkpoint folder before it is registered ----------------------------------------------------

_CONVERT_HINT = ("A checkpoint in DeepSeek's original format (Janus-Pro, Janus-Pro-CXR) must first be converted "
                 "once with transformers' models/janus/convert_janus_weights_to_hf.py.")


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Check a transformers Janus folder without loading it; hash its weights and count its parameters.

    Raises PermanentModelError with the reason: no folder, no or unreadable config.json, another
    architecture, no weights, a truncated or corrupt safetensors file, a missing shard, no processor.
    """
    import hashlib
    import json

    path = os.fspath(path)
    if not os.path.exists(path):
        raise PermanentModelError(f"There is no checkpoint folder at {path}.")
    if not os.path.isdir(path):
        raise PermanentModelError(f"{path} is a file, not a checkpoint folder.")
    names = set(os.listdir(path))
    if "config.json" not in names:
        hint = f" {_CONVERT_HINT}" if names & {"pytorch_model.bin", "model.safetensors"} else ""
        raise PermanentModelError(f"{path} has no config.json, so it is not a transformers checkpoint.{hint}")
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentModelError(f"config.json in {path} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise PermanentModelError(f"config.json in {path} is not a JSON object.")
    model_type = config.get("model_type")
    if model_type != "janus":
        raise PermanentModelError(
            f"config.json in {path} describes a {model_type or 'model of no stated type'!s} model "
            f"({', '.join(config.get('architectures') or []) or 'no architecture named'}), not Janus "
            "(JanusForConditionalGeneration)." + (f" {_CONVERT_HINT}" if model_type == "multi_modality" else ""))

    weight_files = _weight_files(path, names)
    n_parameters, keys = 0, set()
    for name in weight_files:
        count, file_keys = _count_parameters(os.path.join(path, name))
        n_parameters += count
        keys |= file_keys
    if not any(k.startswith("model.language_model.") for k in keys) or \
            not any(k.startswith("model.vision_model.") for k in keys):
        raise PermanentModelError(
            f"The weights in {path} do not have the layout of transformers' Janus model "
            f"(model.language_model.*, model.vision_model.*). {_CONVERT_HINT}")
    if not names & {"processor_config.json", "preprocessor_config.json"}:
        raise PermanentModelError(f"{path} has no processor_config.json or preprocessor_config.json (image processor).")
    if not names & {"tokenizer.json", "tokenizer.model"}:
        raise PermanentModelError(f"{path} has no tokenizer (tokenizer.json or tokenizer.model).")

    hashes = {}
    for name in weight_files:
        digest = hashlib.sha256()
        with open(os.path.join(path, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        hashes[name] = digest.hexdigest()
    if len(hashes) == 1:
        sha256 = next(iter(hashes.values()))
    else:
        manifest = "".join(f"{h}  {n}\n" for n, h in sorted(hashes.items()))
        sha256 = hashlib.sha256(manifest.encode()).hexdigest()
    return CheckpointInfo(path=os.path.abspath(path), sha256=sha256, n_parameters=n_parameters, files=hashes,
                          config=_config_summary(config))


def _weight_files(path: str, names: set[str]) -> list[str]:
    import json

    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index_name in names:
            try:
                with open(os.path.join(path, index_name), encoding="utf-8") as f:
                    shards = sorted(set(json.load(f)["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise PermanentModelError(f"{index_name} in {path} is not a readable shard index: {exc}") from exc
            missing = [s for s in shards if s not in names]
            if missing:
                raise PermanentModelError(f"{path} lacks weight shard(s) named in {index_name}: {', '.join(missing)}.")
            return shards
    for single in ("model.safetensors", "pytorch_model.bin"):
        if single in names:
            return [single]
    raise PermanentModelError(f"{path} has no weights (model.safetensors or pytorch_model.bin).")


def _count_parameters(file: str) -> tuple[int, set[str]]:
    if file.endswith(".safetensors"):
        return _safetensors_parameters(file)
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many kinds for a broken pickle or zip
        raise PermanentModelError(f"{os.path.basename(file)} is not a readable PyTorch weight file: {exc}") from exc
    if not isinstance(state, dict):
        raise PermanentModelError(f"{os.path.basename(file)} does not hold a state dict.")
    return sum(t.numel() for t in state.values() if hasattr(t, "numel")), set(state)


_SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                            "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def _safetensors_parameters(file: str) -> tuple[int, set[str]]:
    """Parameter count from the header, checking that every tensor lies inside the file (truncation)."""
    import json
    import struct

    name = os.path.basename(file)
    size = os.path.getsize(file)
    try:
        with open(file, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise PermanentModelError(f"{name} is truncated: {size} bytes, too short for a safetensors header.")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(size - 8, 100_000_000):
                raise PermanentModelError(f"{name} is not a valid safetensors file (header length {header_len}, "
                                          f"file {size} bytes): truncated or corrupt.")
            header = json.loads(f.read(header_len))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentModelError(f"{name} has an unreadable safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise PermanentModelError(f"{name} has a malformed safetensors header.")
    count, end, keys = 0, 0, set()
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            shape, (start, stop), dtype = info["shape"], info["data_offsets"], info["dtype"]
            n = math.prod(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentModelError(f"{name} has a malformed entry for {key}.") from exc
        if dtype in _SAFETENSORS_DTYPE_BYTES and stop - start != n * _SAFETENSORS_DTYPE_BYTES[dtype]:
            raise PermanentModelError(f"{name} is corrupt: {key} has the wrong number of bytes.")
        count += n
        end = max(end, stop)
        keys.add(key)
    expected = 8 + header_len + end
    if size < expected:
        raise PermanentModelError(f"{name} is truncated: {size:,} bytes where its header needs {expected:,}.")
    return count, keys


def _config_summary(config: dict) -> dict[str, Any]:
    text = config.get("text_config") or {}
    vision = config.get("vision_config") or {}
    summary = {
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "dtype": config.get("dtype") or config.get("torch_dtype"),
        "text": {k: text.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                          "vocab_size") if k in text},
        "vision": {k: vision.get(k) for k in ("hidden_size", "num_hidden_layers", "image_size", "patch_size",
                                              "num_image_tokens") if k in vision},
        "transformers_version": config.get("transformers_version"),
    }
    if config.get("demo_notice"):
        summary["demo_notice"] = config["demo_notice"]
    return summary
