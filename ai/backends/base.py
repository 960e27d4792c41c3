"""The one interface every model backend speaks: settings, requests, drafts, errors, report splitting."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

DEFAULT_PROMPT = "Give a radiology report based on the chest x-ray image, including FINDINGS and IMPRESSION."


class ModelError(Exception):
    """A draft could not be made; `reason` says why in words a person can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransientModelError(ModelError):
    """Worth trying again later: a timeout, a busy or failing server, a refused connection, GPU memory."""


class PermanentModelError(ModelError):
    """Trying again will not help: an image the model cannot take, a bad checkpoint, garbage answers."""


MAX_IMAGES = 4   # a chest examination is one to a few films
ONE_IMAGE_ONLY = ("The janus backend drafts from one image (images = 1): Janus-Pro-CXR was fine-tuned on single "
                  "frontal films. Serve a model that reads several images through the http backend.")


@dataclass(frozen=True)
class GenerationSettings:
    """How a model version is asked for a draft; stored as JSON on the model version, so it must round-trip."""

    prompt: str = DEFAULT_PROMPT
    # The transformers chat template uses <|User|>/<|Assistant|>; the Janus-Pro-CXR authors' own inference
    # script uses User/Assistant. Which one the fine-tune saw is unknown, hence a setting.
    user_role: str = "<|User|>"
    assistant_role: str = "<|Assistant|>"
    include_history: bool = False
    history_template: str = "Clinical history: {history}"
    max_new_tokens: int = 512
    finding_question: str = "Is there {finding} in this chest x-ray? Answer yes or no."
    score_findings: bool = True
    # Finding-guided drafting (the diagnosis-driven prompts of PromptMRG, Jin et al., AAAI 2024): the model first
    # answers the finding questions, then writes the report with its own answers in the question. Only for a
    # model trained that way (the demo model); the paper's model was not, so it is off by default.
    guided_report: bool = False
    guide_template: str = "Findings to report: {findings}."
    guide_threshold: float = 0.5
    # How many images of the study the model takes: 1, the frontal film (the paper's model), or more: the frontal film
    # first, then the study's other images as they arrived (a lateral). A draft waits for the study to settle then.
    images: int = 1

    def __post_init__(self):
        for name in ("prompt", "user_role", "assistant_role", "history_template", "finding_question", "guide_template"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"Generation setting “{name}” must be text.")
        if not self.prompt.strip():
            raise ValueError("The prompt must not be empty.")
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) \
                or not 1 <= self.max_new_tokens <= 8192:
            raise ValueError("max_new_tokens must be a whole number between 1 and 8192.")
        for name in ("include_history", "score_findings", "guided_report"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Generation setting “{name}” must be true or false.")
        if "{finding}" not in self.finding_question:
            raise ValueError("The finding question must contain “{finding}”, where each finding's name goes.")
        if "{history}" not in self.history_template:
            raise ValueError("The history template must contain “{history}”, where the clinical history goes.")
        if "{findings}" not in self.guide_template:
            raise ValueError("The guide template must contain “{findings}”, where the model's findings go.")
        if isinstance(self.guide_threshold, bool) or not isinstance(self.guide_threshold, (int, float)) \
                or not 0.0 < self.guide_threshold < 1.0:
            raise ValueError("guide_threshold must be a number between 0 and 1 (exclusive).")
        if not isinstance(self.images, int) or isinstance(self.images, bool) or not 1 <= self.images <= MAX_IMAGES:
            raise ValueError(f"images must be a whole number between 1 and {MAX_IMAGES}.")
        if self.guided_report and not self.score_findings:
            raise ValueError("A guided report needs the finding scores (score_findings).")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationSettings:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown generation setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**data)

    def question(self, clinical_history: str = "") -> str:
        """The user's question for the report, with the clinical history in front when the settings say so."""
        history = " ".join(clinical_history.split())
        if self.include_history and history:
            return f"{self.history_template.format(history=history)}\n{self.prompt}"
        return self.prompt

    def guided_question(self, question: str, present: list[str]) -> str:
        """The report question after the model's own findings (those at or above guide_threshold), in the
        trial's order; "none" when it found none."""
        return f"{self.guide_template.format(findings=', '.join(present) or 'none')}\n{question}"

    def finding_prompt(self, finding: str) -> str:
        return self.finding_question.format(finding=finding)

    def chat(self, question: str, image_token: str = "<image_placeholder>") -> str:
        """The Janus single-turn text (the processor expands the image token into the image's tokens)."""
        return f"{self.user_role}: {image_token}\n{question}\n\n{self.assistant_role}:"


@dataclass(frozen=True)
class DraftRequest:
    image_png: bytes                 # the 8-bit display image the reader sees (PNG, or any format Pillow reads)
    clinical_history: str = ""
    # the study's other images (same form), for a model that takes more than one (GenerationSettings.images)
    more_images_png: tuple[bytes, ...] = ()

    @property
    def images_png(self) -> tuple[bytes, ...]:
        return (self.image_png, *self.more_images_png)


@dataclass(frozen=True)
class Draft:
    text: str                        # the whole generated report
    findings: str
    impression: str
    finding_scores: dict[str, float]  # finding -> P(yes) in [0, 1]
    generated_tokens: int
    seconds: float                   # this draft's share of the batch's wall time
    score_source: str = "model"      # "model" (next-token probabilities), "logprobs" (server), "text", "none"
    prompt: str = ""                 # the report question actually asked (history included)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@runtime_checkable
class Backend(Protocol):
    def generate(self, requests: list[DraftRequest], *, findings: list[str]) -> list[Draft]:
        """One draft per request, in order. Raises TransientModelError or PermanentModelError."""
        ...


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    sha256: str                      # of the weight file, or of the manifest of shard hashes when sharded
    n_parameters: int
    files: dict[str, str] = field(default_factory=dict)   # weight file -> sha256
    config: dict[str, Any] = field(default_factory=dict)  # a summary of config.json

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# A heading: optional markdown (#, **, __), the word, optional markdown, then a colon or the end of the line.
_HEADING = re.compile(
    # at the start of a line: optional markdown (#, **, __), the word, optional markdown, a colon or the line's end
    r"(?im)(?:^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?P<name>findings|impressions?|conclusions?)[ \t]*"
    r"(?:\*\*|__)?[ \t]*(?::[ \t]*(?:\*\*|__)?|[ \t]*$)"
    # or inside a line, after a space, then only with a colon ("... normal. IMPRESSION: ...")
    r"|(?<=\s)(?:\*\*|__)?(?P<inline>findings|impressions?|conclusions?)(?:\*\*|__)?[ \t]*:(?:\*\*|__)?)"
)


def split_report(text: str) -> tuple[str, str]:
    """(findings, impression) of a report; text outside both headings counts as findings.

    Tolerates "FINDINGS:", "Findings:", "**FINDINGS**", "## Impression", a heading on its own line, one
    section missing, or none (then everything is findings).
    """
    text = (text or "").replace("\r\n", "\n").strip()
    matches = list(_HEADING.finditer(text))
    if not matches:
        return _tidy(text), ""
    findings_parts, impression_parts = [], []
    before = text[: matches[0].start()]
    if before.strip():
        findings_parts.append(before)
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end():end]
        if (match.group("name") or match.group("inline")).lower().startswith("finding"):
            findings_parts.append(body)
        else:
            impression_parts.append(body)
    return _tidy("\n".join(findings_parts)), _tidy("\n".join(impression_parts))


def _tidy(part: str) -> str:
    lines = [line.strip() for line in part.strip().strip("*_").strip().split("\n")]
    out, blank = [], False
    for line in lines:
        if not line:
            blank = bool(out)
            continue
        if blank:
            out.append("")
        out.append(line)
        blank = False
    return "\n".join(out).strip()


def settings_key(settings: GenerationSettings) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True)
