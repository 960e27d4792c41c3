"""The demo model: a small Janus-architecture model the project builds and trains itself on synthetic images.

It exists so that the platform runs end to end with no download and no GPU: a tiny random one for the
tests (`build_tiny_model`), and one trained in minutes on CPU on phantoms from `demo/phantoms/`
(`train_demo_model`), whose drafts name the findings drawn into fresh phantoms and whose finding scores
separate positives from negatives (`evaluate_demo_model`). It is a demo trained on synthetic images and
is never for clinical use; the saved folder says so in its config and its README.

    python -m demo.model train PATH [--images N] [--minutes M] [--vision-steps N] [--steps N] [--seed N]
    python -m demo.model evaluate PATH [--n N] [--seed N]
    python -m demo.model tiny PATH
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ai.backends.base import DEFAULT_PROMPT, GenerationSettings
from ai.backends.janus import cpu_has_bf16
from trial.findings import DEFAULT_FINDINGS

DEMO_NOTICE = ("CXR-Trial demo model: a small Janus-architecture model trained on synthetic (phantom) chest "
               "radiographs. It is a software demonstration, not a medical device: never for clinical use.")
TINY_NOTICE = ("CXR-Trial tiny test model with random weights: it writes nonsense and is for software tests "
               "only, never for clinical use.")

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
IMAGE, BOI, EOI = "<image_placeholder>", "<begin_of_image>", "<end_of_image>"
# The findings the demo model answers: those the phantoms draw (the trial's default findings).
FINDINGS = DEFAULT_FINDINGS

# Words a chest radiograph report and our prompts use: the tokenizer's training text beside the phantom
# reports, so that any report, question or history still tokenizes (byte-level BPE has no unknown token).
_BASE_CORPUS = [
    DEFAULT_PROMPT,
    "Is there pleural effusion in this chest x-ray? Answer yes or no. yes no Yes No",
    "Is there pneumothorax in this chest x-ray? Answer yes or no.",
    "Is there consolidation in this chest x-ray? Answer yes or no.",
    "Is there atelectasis in this chest x-ray? Answer yes or no.",
    "Is there cardiomegaly in this chest x-ray? Answer yes or no.",
    "Is there lung opacity in this chest x-ray? Answer yes or no.",
    "Clinical history: cough and fever for three days, shortness of breath, chest pain, follow-up.",
    "Findings to report: pleural effusion, pneumothorax, consolidation, atelectasis, cardiomegaly, lung opacity.",
    "Findings to report: none.",
    "FINDINGS: The lungs are clear. There is no pleural effusion or pneumothorax. The heart size is normal. "
    "The mediastinal contours are normal. No focal consolidation. No acute osseous abnormality.",
    "IMPRESSION: No acute cardiopulmonary process. Normal chest radiograph.",
    "FINDINGS: Small left pleural effusion with blunting of the costophrenic angle. Moderate right "
    "pleural effusion. Large pneumothorax on the right with a visible pleural line. Consolidation in the "
    "right lower lobe and left upper lobe. Patchy airspace opacity. Linear atelectasis at the bases. The "
    "cardiac silhouette is enlarged, consistent with cardiomegaly. Lung opacity in the mid zone.",
    "IMPRESSION: Left pleural effusion. Right pneumothorax. Right lower lobe consolidation, may represent "
    "pneumonia. Bibasilar atelectasis. Cardiomegaly. Lung opacity. Findings are new compared with prior.",
    "There is no evidence of pneumothorax, effusion, consolidation, atelectasis, cardiomegaly or opacity. "
    "Cannot exclude a small effusion. Possible mild atelectasis. Unchanged. Resolved. Stable.",
]


# How the demo model is trained and asked: it answers the finding questions, then writes the report guided by
# its own answers (GenerationSettings.guided_report). Registered with these settings (stats' setup_demo).
GUIDED = GenerationSettings(guided_report=True)


def special_tokens() -> list[str]:
    return [BOS, EOS, PAD, IMAGE, BOI, EOI]


def build_tokenizer(corpus: Iterable[str] = (), *, vocab_size: int = 1024):
    """A byte-level BPE trained offline on report text, wrapped as the fast tokenizer JanusProcessor expects."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens(),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = list(_BASE_CORPUS) + [t for t in corpus if t]
    tokenizer.train_from_iterator(texts * 3, trainer)
    # The role strings are single tokens (the model never writes them; a real checkpoint spells them out).
    tokenizer.add_tokens([AddedToken("<|User|>", normalized=False), AddedToken("<|Assistant|>", normalized=False)])
    tokenizer.post_processor = TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                  special_tokens=[(BOS, tokenizer.token_to_id(BOS))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left",
        extra_special_tokens={"image_token": IMAGE, "boi_token": BOI, "eoi_token": EOI},
    )


@dataclass(frozen=True)
class Shape:
    """The sizes of a demo model (the real Janus-Pro-1B: 384 px, patch 16, 1024 × 24 vision; 2048 × 24 text)."""

    image_size: int = 128
    patch_size: int = 16
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_intermediate: int = 768
    vocab_size: int = 1024

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


TINY = Shape(image_size=64, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=64,
             text_layers=2, text_heads=4, text_intermediate=128, vocab_size=512)
# 256 px in 32 px patches: 64 image tokens, and the thin lines of a pneumothorax or of atelectasis survive.
# A narrow language model: its training step costs a third of a 256 × 4 one on two CPU cores, for the
# same figures on fresh phantoms at the same number of steps (measured on a GPU, same recipe).
# A small image encoder (128 wide, 3 layers): in float32 on two AVX2 cores its step costs under half of a
# 192 × 4 one, and 1,000 of its steps see better than 500 of the larger one's in the same time (held-out
# finding AUC by a linear probe 0.914 against 0.879; measured 2026-11-28).
DEMO = Shape(image_size=256, patch_size=32, vision_hidden=128, vision_layers=3, text_hidden=192, text_layers=3,
             text_intermediate=512)


def build_config(tokenizer, shape: Shape, *, notice: str):
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    vocab = len(tokenizer)
    text = LlamaConfig(
        vocab_size=vocab, hidden_size=shape.text_hidden, intermediate_size=shape.text_intermediate,
        num_hidden_layers=shape.text_layers, num_attention_heads=shape.text_heads,
        num_key_value_heads=shape.text_heads, max_position_embeddings=1024, rms_norm_eps=1e-6,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    vision = JanusVisionConfig(
        hidden_size=shape.vision_hidden, num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.vision_heads, image_size=shape.image_size, patch_size=shape.patch_size,
        projection_dim=shape.text_hidden, num_image_tokens=shape.num_image_tokens, depth=2,
    )
    # Never used for text, but JanusModel builds it: GroupNorm(32) needs channels divisible by 32.
    vq = JanusVQVAEConfig(
        embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32, channel_multiplier=[1, 1],
        num_res_blocks=1, projection_dim=shape.text_hidden, image_token_embed_dim=shape.text_hidden,
    )
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq,
                         image_token_id=tokenizer.convert_tokens_to_ids(IMAGE))
    config.demo_notice = notice
    config.intended_use = "software demonstration and tests only; not for clinical use"
    return config


def build_processor(tokenizer, shape: Shape):
    from transformers import JanusImageProcessorPil, JanusProcessor

    # Grey-scale radiographs: the same mean and std on the three channels, the padding grey at the mean.
    image_processor = JanusImageProcessorPil(size={"height": shape.image_size, "width": shape.image_size},
                                             image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return JanusProcessor(image_processor=image_processor, tokenizer=tokenizer,
                          num_image_tokens=shape.num_image_tokens, use_default_system_prompt=False)


def _build(tokenizer, shape: Shape, *, notice: str, seed: int):
    import torch
    from transformers import JanusForConditionalGeneration

    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(build_config(tokenizer, shape, notice=notice))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False
    return model, build_processor(tokenizer, shape)


def save(model, processor, path: str | os.PathLike, *, notice: str, extra: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    lines = [f"# {notice.split(':')[0]}", "", notice, "",
             "Built by `demo/model.py` of CXR-Trial (Apache-2.0), offline, from its own config and tokenizer.",
             "Load it with the `janus` backend (transformers' JanusForConditionalGeneration, local files only)."]
    if extra:
        lines += ["", "```json", json.dumps(extra, indent=2, sort_keys=True), "```"]
    (path / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_tiny_model(path: str | os.PathLike, *, seed: int = 0) -> Path:
    """A random-weight Janus model of ~0.2 M parameters and its processor, saved in `path` (for tests; ~1 s)."""
    import torch

    tokenizer = build_tokenizer(vocab_size=TINY.vocab_size)
    model, processor = _build(tokenizer, TINY, notice=TINY_NOTICE, seed=seed)
    with torch.no_grad():
        # Wide random weights, so that greedy decoding wanders over the vocabulary instead of repeating a token.
        for parameter in model.model.language_model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3)
        # Random logits would sometimes pick the end token first and give an empty draft: silence the specials.
        embedding = model.get_input_embeddings().weight
        for token in special_tokens():
            embedding[tokenizer.convert_tokens_to_ids(token)] = 0.0
    return save(model, processor, path, notice=TINY_NOTICE)


# -- training on phantoms -------------------------------------------------------------------------------------

Progress = Callable[[str, float, str], None]   # (stage, fraction done of that stage, a line for people)


def _quiet(stage: str, fraction: float, line: str) -> None:
    pass


@dataclass
class _Example:
    png: bytes
    labels: dict[str, bool]
    report: str
    history: str


def _make_examples(start: int, stop: int, seed: int, size: int) -> list[_Example]:
    """Phantoms number start..stop-1 of a training set: half with the realistic mix of findings, half with
    each finding drawn independently (so that the rare ones are seen often enough)."""
    import numpy as np

    from demo.phantoms import make_phantom, random_findings

    out = []
    for i in range(start, stop):
        rng = np.random.default_rng([7919, seed, i])
        if i % 2:
            findings = random_findings(rng)
        else:
            findings = {f for f in FINDINGS if rng.random() < 0.35}
        phantom = make_phantom(findings=sorted(findings), seed=int(rng.integers(0, 2**31 - 1)), size=size)
        out.append(_Example(png=phantom.png, labels=dict(phantom.labels), report=phantom.report.text,
                            history=phantom.clinical_history))
    return out


def make_examples(n: int, *, seed: int, size: int, workers: int | None = None,
                  progress: Progress = _quiet) -> list[_Example]:
    """`n` training phantoms, made in parallel processes (spawned, so no thread state is forked)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = workers or _cores()
    chunk = max(1, min(64, n // (workers * 4) or 1))
    bounds = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
    examples: list[_Example] = []
    if workers == 1 or n <= chunk:
        for s, e in bounds:
            examples += _make_examples(s, e, seed, size)
            progress("phantoms", len(examples) / n, f"{len(examples)}/{n} phantoms")
        return examples
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(_make_examples, *zip(*[(s, e, seed, size) for s, e in bounds])):
            examples += part
            progress("phantoms", len(examples) / n, f"{len(examples)}/{n} phantoms")
    return examples


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class _Batcher:
    """Turns examples into the prefix / report / question tensors of one training step."""

    def __init__(self, examples: list[_Example], tokenizer, processor, settings: GenerationSettings,
                 *, history_share: float, seed: int):
        import numpy as np
        import torch

        self.examples, self.tokenizer, self.settings = examples, tokenizer, settings
        self.rng = random.Random(seed)
        self.history_share = history_share
        p = processor
        self._image = p.image_start_token + p.image_token * p.num_image_tokens + p.image_end_token
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self.yes = tokenizer(" yes", add_special_tokens=False)["input_ids"]
        self.no = tokenizer(" no", add_special_tokens=False)["input_ids"]
        assert len(self.yes) == 1 and len(self.no) == 1, "yes and no must be single tokens"
        # One grey channel per image (the three RGB channels are equal), kept in half precision.
        pixels = []
        for i in range(0, len(examples), 64):
            images = [_png_to_rgb(e.png) for e in examples[i:i + 64]]
            values = processor.image_processor(images, return_tensors="pt")["pixel_values"]
            pixels.append(torch.as_tensor(values)[:, :1].to(torch.float16))
        self.pixels = torch.cat(pixels)
        self.questions = {f: self.ids(settings.chat(settings.finding_prompt(f))) for f in FINDINGS}
        plain = self.ids(settings.chat(settings.question("")))
        self.prefix = _common_prefix([plain, *self.questions.values()])
        self.plain = plain
        self.targets = [tokenizer(" " + e.report, add_special_tokens=False)["input_ids"] + [self.eos]
                        for e in examples]
        self.order = np.arange(len(examples))
        self.position = len(examples)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text.replace(self.tokenizer.image_token, self._image),
                              add_special_tokens=True)["input_ids"]

    def next_indices(self, n: int) -> list[int]:
        if self.position + n > len(self.order):
            self.rng.shuffle(self.order)
            self.position = 0
        out = self.order[self.position:self.position + n].tolist()
        self.position += n
        return out

    def batch(self, indices: list[int]):
        import torch

        P = self.prefix
        reports, questions = [], []
        for row, i in enumerate(indices):
            e = self.examples[i]
            s = self.settings
            question = s.prompt
            if e.history and self.rng.random() < self.history_share:
                question = f"{s.history_template.format(history=e.history)}\n{s.prompt}"
            if s.guided_report:
                # taught with the true findings; when drafting, the model's own answers take their place
                question = s.guided_question(question, [f for f in FINDINGS if e.labels[f]])
            prompt = self.plain if question == s.prompt else self.ids(s.chat(question))
            assert prompt[:P] == self.plain[:P], "the report question must keep the shared image prefix"
            reports.append((row, prompt[P:], self.targets[i]))
            for f in FINDINGS:
                questions.append((row, self.questions[f][P:], self.yes if e.labels[f] else self.no))
        pixels = self.pixels[indices].float().expand(-1, 3, -1, -1)
        prefix_ids = torch.tensor([self.plain[:P]] * len(indices))
        return pixels, prefix_ids, self._rows(reports), self._rows(questions)

    def _rows(self, rows):
        import torch

        width = max(len(p) + len(t) for _, p, t in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (_, prompt, target) in enumerate(rows):
            seq = prompt + target
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
            # label at position j is the token at j+1: the prompt's last token predicts the first target
            labels[r, len(prompt) - 1:len(seq) - 1] = torch.tensor(target)
        image_of_row = torch.tensor([img for img, _, _ in rows])
        return ids, mask, labels, image_of_row


def _png_to_rgb(data: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def _common_prefix(rows: list[list[int]]) -> int:
    n = min(len(r) for r in rows)
    for j in range(n):
        if any(r[j] != rows[0][j] for r in rows):
            return j
    return n


def _to(value, device):
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    return value.to(device)


def _kv(cache) -> list[tuple]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def _rows_loss(model, kv, prefix_len: int, rows, config):
    """Cross-entropy of the rows (report or questions) continuing the shared image prefix's cache."""
    import torch
    from transformers import DynamicCache

    ids, mask, labels, image_of_row = rows
    cache = DynamicCache(config=config.text_config)
    for layer, (k, v) in enumerate(kv):
        cache.update(k[image_of_row], v[image_of_row], layer)
    n, width = ids.shape
    full_mask = torch.cat([torch.ones(n, prefix_len, dtype=mask.dtype, device=ids.device), mask], dim=1)
    positions = prefix_len + torch.arange(width, device=ids.device)[None, :].expand(n, width)
    kwarg = "cache" if "cache" in _parameters(model.model.forward) else "past_key_values"
    out = model.model(input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                      **{kwarg: cache})
    keep = labels != -100
    logits = model.lm_head(out.last_hidden_state[keep])
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep]), logits, labels[keep]


def _parameters(fn) -> set[str]:
    import inspect

    return set(inspect.signature(fn).parameters)


def _schedule(step: int, done: float, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak over the stage (done: 0 → 1)."""
    return peak * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))


class _Clock:
    """Progress through a stage, by steps or by seconds, whichever runs out first."""

    def __init__(self, steps: int | None, seconds: float | None):
        self.steps, self.seconds, self.start, self.step = steps, seconds, time.perf_counter(), 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def done(self) -> float:
        by_steps = self.step / self.steps if self.steps else 0.0
        by_time = self.elapsed / self.seconds if self.seconds else 0.0
        return max(by_steps, by_time)


def train_demo_model(path: str | os.PathLike, *, n_images: int = 2400, steps: int | None = 700,
                     vision_steps: int | None = 1000, seed: int = 0, minutes: float | None = 14.0,
                     vision_share: float = 0.45, batch_size: int = 16, vision_batch_size: int = 48,
                     image_size: int = 512, shape: Shape | None = None, learning_rate: float = 2e-3,
                     vision_learning_rate: float = 1.5e-3, history_share: float = 0.25,
                     freeze_vision: bool = True, threads: int | None = None, device: str = "cpu",
                     progress: Progress = _quiet) -> dict:
    """Train the demo model on `n_images` phantoms and save it in `path`; returns what happened.

    Two stages. First the image encoder (vision tower and aligner) learns to see the findings, with
    a temporary linear head on its pooled tokens (cheap: no language model in the loop). Then the
    language model and the aligner learn the yes/no finding questions and the reports, each
    continuing the image's shared prefix; the report question names the image's true findings
    (`GUIDED`: when drafting, the model's own yes answers take their place). Each stage stops after its
    steps (`vision_steps`, `steps`) or when its share of the time left of `minutes` (counted from the
    start, phantoms included) has passed, whichever comes first; on a busy machine the time cap stops
    the stages early, so the run still ends within 15 minutes. The phantoms are drawn at `image_size`
    (512, the size the demo enrols them at: the model learns from the same display images, scaled by its
    processor, that it drafts from; drawn at 256 instead, the thin lines come out thicker than the model
    later sees them).
    """
    import torch

    started = time.perf_counter()
    shape = shape or DEMO
    progress("phantoms", 0.0, f"making {n_images} synthetic radiographs")
    examples = make_examples(n_images, seed=seed, size=image_size, progress=progress)
    made = time.perf_counter()

    torch.set_num_threads(threads or _cores())
    tokenizer = build_tokenizer([e.report for e in examples] + [e.history for e in examples],
                                vocab_size=shape.vocab_size)
    model, processor = _build(tokenizer, shape, notice=DEMO_NOTICE, seed=seed)
    settings = GUIDED
    batcher = _Batcher(examples, tokenizer, processor, settings, history_share=history_share, seed=seed)
    device = torch.device(device)
    model.to(device)
    # bf16 autocast where the hardware does bf16 matmuls (a GPU, a CPU with AVX-512 BF16 / AMX); elsewhere
    # (e.g. an AVX2-only CPU) oneDNN emulates bf16 about 30x slower than float32, so train in float32.
    mixed = device.type == "cuda" or cpu_has_bf16(torch)
    # Eager attention trains about a third faster than SDPA at these sizes on CPU (bf16 matmuls on AMX).
    model.set_attn_implementation("eager")
    model.train()
    budget = max(60.0, minutes * 60.0 - (time.perf_counter() - started)) if minutes else None
    history: list[tuple] = []

    # Stage 1: the image encoder, with a throw-away head on its mean- and max-pooled tokens.
    vision, aligner = model.model.vision_model, model.model.aligner
    head = torch.nn.Linear(2 * shape.text_hidden, len(FINDINGS)).to(device)
    encoder = list(vision.parameters()) + list(aligner.parameters())
    optimizer = torch.optim.AdamW([{"params": encoder}, {"params": head.parameters()}],
                                  lr=vision_learning_rate, weight_decay=0.05, betas=(0.9, 0.98))
    labels = torch.tensor([[e.labels[f] for f in FINDINGS] for e in examples], dtype=torch.float32)
    clock = _Clock(vision_steps, budget * vision_share if budget else None)
    warmup = min(50, (vision_steps or 500) // 10 + 1)
    while clock.done < 1.0 and (vision_steps is None or vision_steps > 0):
        for group in optimizer.param_groups:
            group["lr"] = _schedule(clock.step, clock.done, vision_learning_rate, warmup)
        index = batcher.next_indices(vision_batch_size)
        pixels = batcher.pixels[index].float().expand(-1, 3, -1, -1).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            tokens = aligner(vision(pixels).last_hidden_state)
            logits = head(torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)).float()
        target = labels[index].to(device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder, 1.0)
        optimizer.step()
        accuracy = float(((logits > 0) == (target > 0.5)).float().mean())
        history.append(("vision", clock.step, float(loss.detach()), accuracy))
        clock.step += 1
        if clock.step % 25 == 0 or clock.step == 1:
            recent = [h for h in history[-25:] if h[0] == "vision"]
            progress("vision", min(1.0, clock.done),
                     f"step {clock.step}: finding loss {sum(h[2] for h in recent) / len(recent):.3f}, "
                     f"accuracy {sum(h[3] for h in recent) / len(recent):.3f}, {clock.elapsed:.0f} s")
    vision_seconds, n_vision = clock.elapsed, clock.step
    del head, optimizer

    # Stage 2: the language model and the aligner (and the vision tower unless frozen: a random language
    # model's first gradients would undo what it learned, and its backward pass is a third of a step).
    if freeze_vision:
        vision.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in trainable if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                                  lr=learning_rate, betas=(0.9, 0.98))
    clock = _Clock(steps, (budget - vision_seconds) if budget else None)
    warmup = min(30, (steps or 300) // 10 + 1)
    while clock.done < 1.0:
        for group in optimizer.param_groups:
            group["lr"] = _schedule(clock.step, clock.done, learning_rate, warmup)
        pixels, prefix_ids, reports, questions = _to(batcher.batch(batcher.next_indices(batch_size)), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
            out = model.model(input_ids=prefix_ids, pixel_values=pixels, use_cache=True)
            kv = _kv(out.cache if getattr(out, "cache", None) is not None else out.past_key_values)
            question_loss, logits, answers = _rows_loss(model, kv, prefix_ids.shape[1], questions, model.config)
            report_loss, _, _ = _rows_loss(model, kv, prefix_ids.shape[1], reports, model.config)
        loss = report_loss + question_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        optimizer.step()
        accuracy = float((logits.argmax(-1) == answers).float().mean())
        history.append(("model", clock.step, float(report_loss.detach()), float(question_loss.detach()), accuracy))
        clock.step += 1
        if clock.step % 10 == 0 or clock.step == 1:
            recent = [h for h in history[-10:] if h[0] == "model"]
            progress("training", min(1.0, clock.done),
                     f"step {clock.step}: report loss {sum(h[2] for h in recent) / len(recent):.3f}, "
                     f"question loss {sum(h[3] for h in recent) / len(recent):.3f}, "
                     f"answer accuracy {sum(h[4] for h in recent) / len(recent):.3f}, {clock.elapsed:.0f} s")
    trained = time.perf_counter()
    vision.requires_grad_(True)
    model.eval()
    model.set_attn_implementation("sdpa")
    model.to("cpu")
    joint = [h for h in history if h[0] == "model"]
    facts = {
        "phantoms": n_images, "vision_steps": n_vision, "steps": clock.step, "batch_size": batch_size,
        "vision_batch_size": vision_batch_size, "seed": seed, "image_size": image_size,
        "seconds_making_phantoms": round(made - started, 1), "seconds_vision": round(vision_seconds, 1),
        "seconds_training": round(trained - made, 1),
        "first_losses": [round(h[2] + h[3], 4) for h in joint[:5]],
        "last_losses": [round(h[2] + h[3], 4) for h in joint[-5:]],
        "parameters": sum(p.numel() for p in model.parameters()), "device": str(device),
        "precision": "bf16 autocast" if mixed else "float32", "generation": settings.to_dict(),
    }
    save(model, processor, path, notice=DEMO_NOTICE, extra=facts)
    facts["seconds_total"] = round(time.perf_counter() - started, 1)
    facts["history"] = history
    progress("done", 1.0, f"saved the demo model in {path}")
    return facts


# -- evaluation on fresh phantoms -----------------------------------------------------------------------------

def evaluate_demo_model(path: str | os.PathLike, *, n: int = 120, seed: int = 20260, size: int = 512,
                        batch_size: int = 8, progress: Progress = _quiet) -> dict:
    """Drafts for `n` fresh phantoms (a seed the training never used), labelled by ai/labeler.py.

    Returns `label_f1` (micro F1 of "present" in the drafts against the drawn findings, over every
    phantom and finding), `auc` (mean over findings of the AUC of the finding scores, by
    stats/methods/roc.py), and the per-finding figures behind them.
    """
    import numpy as np

    from ai.backends.janus import JanusBackend
    from ai.labeler import label_report
    from demo.phantoms import make_dataset
    from stats.methods.roc import roc_auc

    progress("phantoms", 0.0, f"making {n} fresh phantoms (seed {seed})")
    phantoms = make_dataset(n, seed=seed, size=size)
    backend = JanusBackend(os.fspath(path), GenerationSettings(**{**GUIDED.to_dict(), "max_new_tokens": 200}),
                           batch_size=batch_size)
    from ai.backends.base import DraftRequest

    drafts, started = [], time.perf_counter()
    for i in range(0, n, batch_size):
        chunk = phantoms[i:i + batch_size]
        drafts += backend.generate([DraftRequest(image_png=p.png) for p in chunk], findings=list(FINDINGS))
        progress("drafts", len(drafts) / n, f"{len(drafts)}/{n} drafts")
    seconds = time.perf_counter() - started
    truth = np.array([[p.labels[f] for f in FINDINGS] for p in phantoms], dtype=bool)
    said = np.array([[label_report(d.text, list(FINDINGS))[f] == "present" for f in FINDINGS] for d in drafts])
    scores = np.array([[d.finding_scores[f] for f in FINDINGS] for d in drafts], dtype=float)
    per_finding = {}
    for k, f in enumerate(FINDINGS):
        tp, fp, fn = int((said[:, k] & truth[:, k]).sum()), int((said[:, k] & ~truth[:, k]).sum()), \
            int((~said[:, k] & truth[:, k]).sum())
        auc = _auc(roc_auc, truth[:, k], scores[:, k])
        per_finding[f] = {"positives": int(truth[:, k].sum()), "f1": _f1(tp, fp, fn), "auc": auc}
    tp, fp, fn = int((said & truth).sum()), int((said & ~truth).sum()), int((~said & truth).sum())
    aucs = [v["auc"] for v in per_finding.values() if not math.isnan(v["auc"])]
    return {
        "label_f1": _f1(tp, fp, fn),
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
        "auc_pooled": _auc(roc_auc, truth.ravel(), scores.ravel()),
        "exact_match": float((said == truth).all(axis=1).mean()),
        "per_finding": per_finding,
        "n": n, "seed": seed, "size": size,
        "seconds_per_draft": seconds / n,
        "example": drafts[0].text if drafts else "",
    }


def _auc(roc_auc, truth, scores) -> float:
    """The AUC, or NaN where there are fewer than two positives or two negatives to rank."""
    positives = int(truth.sum())
    if positives < 2 or len(truth) - positives < 2:
        return float("nan")
    return float(roc_auc(truth, scores).auc)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


# -- command line ---------------------------------------------------------------------------------------------

def _print_progress(stage: str, fraction: float, line: str) -> None:
    width = 30
    bar = "#" * int(round(fraction * width))
    print(f"\r{stage:>9} [{bar:<{width}}] {fraction * 100:5.1f}%  {line[:90]:<90}", end="", file=sys.stderr, flush=True)
    if fraction >= 1.0 or stage == "done":
        print(file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.model", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train the demo model on phantoms and save it in PATH")
    train.add_argument("path")
    train.add_argument("--images", type=int, default=2400)
    train.add_argument("--steps", type=int, default=700, help="steps of the second stage (questions and reports)")
    train.add_argument("--vision-steps", type=int, default=1000, help="steps of the first stage (image encoder)")
    train.add_argument("--minutes", type=float, default=14.0,
                       help="time cap of the whole run, phantoms included; 0 for none")
    train.add_argument("--device", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    evaluate = commands.add_parser("evaluate", help="label F1 and AUC of the model in PATH on fresh phantoms")
    evaluate.add_argument("path")
    evaluate.add_argument("--n", type=int, default=120)
    evaluate.add_argument("--seed", type=int, default=20260)
    tiny = commands.add_parser("tiny", help="save a tiny random-weight model in PATH (for tests)")
    tiny.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "train":
        facts = train_demo_model(args.path, n_images=args.images, steps=args.steps, vision_steps=args.vision_steps,
                                 minutes=args.minutes or None, seed=args.seed, device=args.device,
                                 progress=_print_progress)
        facts.pop("history", None)
        print(json.dumps(facts, indent=2))
    elif args.command == "evaluate":
        result = evaluate_demo_model(args.path, n=args.n, seed=args.seed, progress=_print_progress)
        print(json.dumps(result, indent=2))
        print(f"label F1 {result['label_f1']:.3f} (goal ≥ 0.8)   AUC {result['auc']:.3f} (goal ≥ 0.9)")
    else:
        print(build_tiny_model(args.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
