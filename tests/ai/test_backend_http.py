"""The http backend against a fake OpenAI-compatible server started by the test on 127.0.0.1."""
from __future__ import annotations

import base64
import math
import socket

import pytest

from ai.backends import (
    DraftRequest,
    GenerationSettings,
    PermanentModelError,
    TransientModelError,
    clear_backends,
    get_backend,
)
from ai.backends.http import HttpBackend

from .conftest import completion

REPORT = "FINDINGS: Small left pleural effusion. No pneumothorax.\n\nIMPRESSION: Left pleural effusion."


def is_question(body) -> bool:
    return "Answer yes or no" in body["messages"][0]["content"][-1]["text"]


def backend(url, **options) -> HttpBackend:
    options = {"retries": 2, "backoff": 0.01, "timeout": 5, **options}
    return HttpBackend(url, GenerationSettings(), **options)


def test_a_normal_answer_becomes_a_draft_with_sections(fake_server, png):
    server = fake_server(lambda body, n: (200,
                                          completion("No") if is_question(body) else completion(REPORT, tokens=21),
                                          0))
    image = png(1)
    [draft] = backend(server.url, model="janus-pro-cxr", api_key="k-123").generate(
        [DraftRequest(image_png=image, clinical_history="cough")], findings=["pneumothorax"])

    assert draft.findings == "Small left pleural effusion. No pneumothorax."
    assert draft.impression == "Left pleural effusion."
    assert draft.generated_tokens == 21
    report = server.requests[0]
    assert report["model"] == "janus-pro-cxr" and report["temperature"] == 0 and report["max_tokens"] == 512
    parts = report["messages"][0]["content"]
    assert parts[0]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    assert parts[1]["text"].startswith("Give a radiology report")  # history off by default
    assert server.headers[0]["Authorization"] == "Bearer k-123"


def test_history_goes_into_the_question_when_the_settings_say_so(fake_server, png):
    server = fake_server(lambda body, n: (200, completion(REPORT), 0))
    settings = GenerationSettings(include_history=True, score_findings=False)
    HttpBackend(server.url, settings).generate([DraftRequest(png(), clinical_history="fever, cough")], findings=[])
    assert server.requests[0]["messages"][0]["content"][1]["text"] == (
        "Clinical history: fever, cough\nGive a radiology report based on the chest x-ray image, "
        "including FINDINGS and IMPRESSION.")


def test_logprob_scores_are_the_yes_share_of_yes_and_no(fake_server, png):
    def answer(body, n):
        if not is_question(body):
            return 200, completion(REPORT), 0
        assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
        if "effusion" in body["messages"][0]["content"][1]["text"]:
            return 200, completion("Yes", top=[("Yes", math.log(0.6)), (" yes", math.log(0.2)),
                                               ("No", math.log(0.1)), ("Maybe", math.log(0.1))]), 0
        return 200, completion("No", top=[("No", math.log(0.9)), ("Yes", math.log(0.05))]), 0

    server = fake_server(answer)
    [draft] = backend(server.url).generate([DraftRequest(png())], findings=["pleural effusion", "pneumothorax"])
    assert draft.score_source == "logprobs"
    assert draft.finding_scores["pleural effusion"] == pytest.approx(0.8 / 0.9)
    assert draft.finding_scores["pneumothorax"] == pytest.approx(0.05 / 0.95)


def test_without_logprobs_scores_come_from_the_answer_text_and_say_so(fake_server, png):
    def answer(body, n):
        if not is_question(body):
            return 200, completion(REPORT), 0
        return 200, completion("Yes." if "effusion" in body["messages"][0]["content"][1]["text"] else "no"), 0

    server = fake_server(answer)
    [draft] = backend(server.url).generate([DraftRequest(png())], findings=["pleural effusion", "pneumothorax"])
    assert draft.score_source == "text"
    assert draft.finding_scores == {"pleural effusion": 1.0, "pneumothorax": 0.0}


def test_a_timeout_is_retried_and_then_succeeds(fake_server, png):
    server = fake_server(lambda body, n: (200, completion(REPORT), 1.5 if n == 1 else 0))
    [draft] = backend(server.url, timeout=0.5).generate([DraftRequest(png())], findings=[])
    assert draft.impression == "Left pleural effusion."
    assert len(server.requests) == 2


def test_server_errors_are_retried_then_reported_as_transient(fake_server, png):
    server = fake_server(lambda body, n: (500, {"error": {"message": "CUDA error: device-side assert"}}, 0))
    with pytest.raises(TransientModelError, match=r"after 3 attempts: HTTP 500.*device-side assert"):
        backend(server.url).generate([DraftRequest(png())], findings=[])
    assert len(server.requests) == 3  # 1 + 2 retries


def test_a_busy_server_is_waited_for(fake_server, png):
    server = fake_server(lambda body, n: (429, {"error": "slow down"}, 0) if n < 3 else (200, completion(REPORT), 0))
    [draft] = backend(server.url).generate([DraftRequest(png())], findings=[])
    assert draft.findings.startswith("Small left") and len(server.requests) == 3


@pytest.mark.parametrize("payload, reason", [
    (b"<html>Bad gateway</html>", "not JSON"),
    ({"id": "x", "choices": []}, "no choices"),
    (completion("   "), "text is empty"),
])
def test_garbage_answers_fail_permanently_after_retries(fake_server, png, payload, reason):
    server = fake_server(lambda body, n: (200, payload, 0))
    with pytest.raises(PermanentModelError, match=f"no usable answer for report after 3 attempts: .*{reason}"):
        backend(server.url).generate([DraftRequest(png())], findings=[])
    assert len(server.requests) == 3


def test_bad_credentials_fail_at_once_with_the_reason(fake_server, png):
    server = fake_server(lambda body, n: (401, {"error": "invalid api key"}, 0))
    with pytest.raises(PermanentModelError, match="refused the credentials.*check the API key"):
        backend(server.url).generate([DraftRequest(png())], findings=[])
    assert len(server.requests) == 1


def test_a_refused_connection_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientModelError, match="cannot connect"):
        backend(f"http://127.0.0.1:{port}/v1").generate([DraftRequest(b"\x89PNG")], findings=[])


def test_a_batch_keeps_its_order(fake_server, png):
    def answer(body, n):
        history = body["messages"][0]["content"][1]["text"].split("\n")[0]
        return 200, completion(f"FINDINGS: {history}\nIMPRESSION: ok"), 0

    server = fake_server(answer)
    settings = GenerationSettings(include_history=True, score_findings=False)
    requests = [DraftRequest(png(i), clinical_history=f"case {i}") for i in range(6)]
    drafts = HttpBackend(server.url, settings, concurrency=3).generate(requests, findings=[])
    assert [d.findings for d in drafts] == [f"Clinical history: case {i}" for i in range(6)]


def test_get_backend_caches_one_backend_per_configuration(fake_server):
    clear_backends()
    settings = GenerationSettings()
    a = get_backend("http", url="http://127.0.0.1:1/v1", settings=settings, model="m")
    assert get_backend("http", url="http://127.0.0.1:1/v1", settings=GenerationSettings(), model="m") is a
    assert get_backend("http", url="http://127.0.0.1:1/v1", settings=settings, model="other") is not a
    with pytest.raises(PermanentModelError, match="options were refused"):
        get_backend("http", url="http://127.0.0.1:1/v1", settings=settings, colour="blue")
    with pytest.raises(PermanentModelError, match="Unknown backend"):
        get_backend("onnx", path="/x", settings=settings)
    clear_backends()


def test_guided_drafting_is_refused_for_a_server():
    with pytest.raises(ValueError, match="guided_report"):
        HttpBackend("http://127.0.0.1:1/v1", GenerationSettings(guided_report=True))


def _images_sent(body) -> list[str]:
    return [p["image_url"]["url"] for p in body["messages"][0]["content"] if p["type"] == "image_url"]


def test_a_model_of_two_images_is_asked_with_the_frontal_then_the_lateral(fake_server, png):
    server = fake_server(lambda body, n: (200, completion("No") if is_question(body) else completion(REPORT), 0))
    frontal, lateral, third = png(1), png(2), png(3)
    settings = GenerationSettings(images=2, score_findings=True)
    HttpBackend(server.url, settings, retries=0).generate(
        [DraftRequest(frontal, more_images_png=(lateral, third))], findings=["pneumothorax"])
    urls = ["data:image/png;base64," + base64.b64encode(i).decode() for i in (frontal, lateral)]
    assert len(server.requests) == 2                              # the report and the finding question
    assert all(_images_sent(body) == urls for body in server.requests)  # both, in order; the third left out
    assert all(body["messages"][0]["content"][-1]["type"] == "text" for body in server.requests)


def test_a_model_of_one_image_is_asked_with_the_frontal_alone(fake_server, png):
    server = fake_server(lambda body, n: (200, completion(REPORT), 0))
    HttpBackend(server.url, GenerationSettings(score_findings=False), retries=0).generate(
        [DraftRequest(png(1), more_images_png=(png(2),))], findings=[])
    assert _images_sent(server.requests[0]) == ["data:image/png;base64," + base64.b64encode(png(1)).decode()]


def test_an_empty_image_of_the_study_is_refused(fake_server, png):
    server = fake_server(lambda body, n: (200, completion(REPORT), 0))
    with pytest.raises(PermanentModelError, match="empty"):
        HttpBackend(server.url, GenerationSettings(images=2), retries=0).generate(
            [DraftRequest(png(1), more_images_png=(b"",))], findings=[])
    assert server.requests == []


@pytest.mark.parametrize("images", [0, 5, "2", True, 1.5])
def test_the_number_of_images_is_a_whole_number_from_one_to_four(images):
    with pytest.raises(ValueError, match="images must be"):
        GenerationSettings(images=images)
