"""The janus backend on a tiny random Janus checkpoint built offline: same answers as transformers, batched."""
from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ai.backends import (
    Draft,
    DraftRequest,
    GenerationSettings,
    PermanentModelError,
    clear_backends,
    get_backend,
    split_report,
)
from ai.backends.janus import JanusBackend

FINDINGS = ["pleural effusion", "pneumothorax", "cardiomegaly"]


@pytest.fixture(scope="module")
def backend(tiny_janus_path):
    return JanusBackend(tiny_janus_path, GenerationSettings(max_new_tokens=10, include_history=True), dtype="float32")


def reference(backend: JanusBackend, request: DraftRequest):
    """What a plain transformers pipeline says: processor + model.generate, and one forward per question."""
    settings, processor, model = backend.settings, backend.processor, backend.model
    image = Image.open(io.BytesIO(request.image_png)).convert("RGB")
    inputs = processor(text=[settings.chat(settings.question(request.clinical_history))], images=[image],
                       return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=settings.max_new_tokens)
    text = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    scores = {}
    for finding in FINDINGS:
        inputs = processor(text=[settings.chat(settings.finding_prompt(finding))], images=[image], return_tensors="pt")
        with torch.no_grad():
            probs = model(**inputs).logits[0, -1].float().softmax(-1)
        yes, no = probs[backend._yes_ids].sum(), probs[backend._no_ids].sum()
        scores[finding] = float(yes / (yes + no))
    return text, scores


def test_drafts_match_transformers_generate_and_forward(backend, png):
    requests = [DraftRequest(png(1)), DraftRequest(png(2, size=(64, 120)), clinical_history="Fever and cough.")]
    drafts = backend.generate(requests, findings=FINDINGS)

    assert len(drafts) == 2 and all(isinstance(d, Draft) for d in drafts)
    for draft, request in zip(drafts, requests):
        text, scores = reference(backend, request)
        assert draft.text == text and draft.text
        assert draft.finding_scores == pytest.approx(scores, abs=1e-4)
        assert 0 < draft.generated_tokens <= 10
        assert draft.score_source == "model"
        assert (draft.findings, draft.impression) == split_report(draft.text)


def test_the_prompt_is_the_processors(backend):
    text = backend.settings.chat("Give a report.")
    image = Image.new("RGB", (32, 32))
    assert backend.prompt_ids(text) == backend.processor(text=[text], images=[image])["input_ids"][0].tolist()
    assert text == "<|User|>: <image_placeholder>\nGive a report.\n\n<|Assistant|>:"


def test_history_is_in_the_prompt_only_when_asked(backend, png):
    [with_history] = backend.generate([DraftRequest(png(3), clinical_history="  Fever,\n cough. ")], findings=[])
    assert with_history.prompt.startswith("Clinical history: Fever, cough.\nGive a radiology report")
    plain = JanusBackend(backend.path, GenerationSettings(max_new_tokens=3), dtype="float32")
    [draft] = plain.generate([DraftRequest(png(3), clinical_history="Fever")], findings=[])
    assert draft.prompt == GenerationSettings().prompt


def test_batching_gives_the_same_drafts_as_one_by_one(backend, png):
    requests = [DraftRequest(png(i, size=(60 + 9 * i, 90)), clinical_history="x " * i) for i in range(5)]
    together = backend.generate(requests, findings=FINDINGS)
    alone = [backend.generate([r], findings=FINDINGS)[0] for r in requests]
    assert [d.text for d in together] == [d.text for d in alone]
    for a, b in zip(together, alone):
        assert a.finding_scores == pytest.approx(b.finding_scores, abs=1e-4)


def test_a_guided_report_names_the_findings_the_model_answered_yes_to(tiny_janus_path, png):
    request = DraftRequest(png(11))
    plain = JanusBackend(tiny_janus_path, GenerationSettings(max_new_tokens=8), dtype="float32")
    [unguided] = plain.generate([request], findings=FINDINGS)
    ranked = sorted(unguided.finding_scores.values())
    threshold = (ranked[0] + ranked[1]) / 2  # the lowest-scored finding out, the others in
    settings = GenerationSettings(max_new_tokens=8, guided_report=True, guide_threshold=threshold)
    [guided] = JanusBackend(tiny_janus_path, settings, dtype="float32").generate([request], findings=FINDINGS)
    present = [f for f in FINDINGS if unguided.finding_scores[f] >= threshold]
    assert 0 < len(present) < len(FINDINGS)
    assert guided.prompt == f"Findings to report: {', '.join(present)}.\n{settings.prompt}"
    assert guided.finding_scores == pytest.approx(unguided.finding_scores, abs=1e-5)
    # the report is what the model writes after exactly that question (a plain transformers generate agrees)
    asked = JanusBackend(tiny_janus_path, GenerationSettings(max_new_tokens=8, prompt=guided.prompt), dtype="float32")
    asked.load()
    assert guided.text == reference(asked, request)[0]


def test_a_guided_report_with_nothing_found_says_none(tiny_janus_path, png):
    settings = GenerationSettings(max_new_tokens=4, guided_report=True, guide_threshold=0.999999)
    [draft] = JanusBackend(tiny_janus_path, settings, dtype="float32").generate([DraftRequest(png(2))],
                                                                               findings=FINDINGS)
    assert draft.prompt.startswith("Findings to report: none.\n")


def test_scores_are_probabilities_for_each_finding(backend, png):
    [draft] = backend.generate([DraftRequest(png(7))], findings=FINDINGS)
    assert set(draft.finding_scores) == set(FINDINGS)
    assert all(0.0 <= s <= 1.0 for s in draft.finding_scores.values())


def test_no_findings_asked_means_no_scores(backend, png):
    [draft] = backend.generate([DraftRequest(png(7))], findings=[])
    assert draft.finding_scores == {} and draft.score_source == "none"


def test_timing_separates_prefill_and_decoding(backend, png):
    backend.generate([DraftRequest(png(8)), DraftRequest(png(9))], findings=FINDINGS)
    timing = backend.last_timing
    assert timing.images == 2 and timing.decode_steps == 9 and timing.generated_tokens == [10, 10]
    assert timing.prefill_seconds > 0 and timing.seconds_per_step > 0


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"this is not an image", "could not be read as a picture"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "could not be read as a picture"),
])
def test_an_image_the_model_cannot_take_is_refused_with_the_reason(backend, data, reason):
    with pytest.raises(PermanentModelError, match=reason):
        backend.generate([DraftRequest(image_png=data)], findings=FINDINGS)


def test_a_sixteen_bit_png_is_scaled_to_eight_bits(backend):
    import numpy as np

    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 8).astype(np.uint16)).save(buffer, format="PNG")
    [draft] = backend.generate([DraftRequest(buffer.getvalue())], findings=["pneumothorax"])
    assert draft.text


def test_a_missing_checkpoint_is_permanent(tmp_path, png):
    with pytest.raises(PermanentModelError, match="no checkpoint folder"):
        JanusBackend(str(tmp_path / "nowhere"), GenerationSettings()).generate([DraftRequest(png())], findings=[])


def test_get_backend_loads_the_model_once_per_process_and_lazily(tiny_janus_path, png):
    clear_backends()
    settings = GenerationSettings(max_new_tokens=4)
    backend = get_backend("janus", path=tiny_janus_path, settings=settings)
    assert backend.model is None  # nothing loaded before the first draft (a worker forks first)
    backend.generate([DraftRequest(png(1))], findings=["pneumothorax"])
    model = backend.model
    again = get_backend("janus", path=tiny_janus_path, settings=GenerationSettings(max_new_tokens=4))
    assert again is backend and again.model is model
    assert str(backend.device) == "cpu" and backend.dtype == torch.float32  # a small model stays in fp32 on CPU
    clear_backends()


def test_int8_quantization_keeps_the_drafts_working(tiny_janus_path, png):
    quantized = JanusBackend(tiny_janus_path, GenerationSettings(max_new_tokens=6), quantize="int8")
    [draft] = quantized.generate([DraftRequest(png(1))], findings=["pneumothorax"])
    assert draft.text and 0 <= draft.finding_scores["pneumothorax"] <= 1


def test_settings_round_trip_and_refuse_nonsense():
    settings = GenerationSettings(user_role="User", assistant_role="Assistant", include_history=True,
                                  max_new_tokens=300)
    assert GenerationSettings.from_dict(settings.to_dict()) == settings
    assert GenerationSettings.from_dict({}) == GenerationSettings()
    assert settings.chat("Q?") == "User: <image_placeholder>\nQ?\n\nAssistant:"
    with pytest.raises(ValueError, match="Unknown generation setting"):
        GenerationSettings.from_dict({"temperature": 0.7})
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ValueError, match=r"\{finding\}"):
        GenerationSettings(finding_question="Anything wrong?")
    guided = GenerationSettings(guided_report=True, guide_threshold=0.4)
    assert GenerationSettings.from_dict(guided.to_dict()) == guided
    assert guided.guided_question("Q?", []) == "Findings to report: none.\nQ?"
    with pytest.raises(ValueError, match="guide_threshold"):
        GenerationSettings(guide_threshold=1.0)
    with pytest.raises(ValueError, match=r"\{findings\}"):
        GenerationSettings(guide_template="Seen:")
    with pytest.raises(ValueError, match="score_findings"):
        GenerationSettings(guided_report=True, score_findings=False)


@pytest.mark.parametrize("text, findings, impression", [
    ("FINDINGS: Clear lungs.\nIMPRESSION: Normal.", "Clear lungs.", "Normal."),
    ("Findings:\nSmall effusion.\n\nImpression:\nEffusion.", "Small effusion.", "Effusion."),
    ("**FINDINGS**\nClear.\n\n**IMPRESSION**\nNormal.", "Clear.", "Normal."),
    ("**Findings:** Clear.\n**Impression:** Normal.", "Clear.", "Normal."),
    ("## Findings\nClear.\n## Impression\nNormal.", "Clear.", "Normal."),
    ("FINDINGS: Clear lungs. IMPRESSION: Normal.", "Clear lungs.", "Normal."),
    ("IMPRESSION: No acute disease.", "", "No acute disease."),
    ("FINDINGS: Clear lungs.", "Clear lungs.", ""),
    ("The lungs are clear.", "The lungs are clear.", ""),
    ("", "", ""),
    ("The findings are as follows: clear.\nImpression: normal.", "The findings are as follows: clear.", "normal."),
])
def test_split_report(text, findings, impression):
    assert split_report(text) == (findings, impression)
