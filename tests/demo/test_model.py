"""The demo model: built offline, trained briefly on phantoms (loss goes down), loaded by the janus backend.

The full 15-minute quality run is a command, not a test:
    python -m demo.model train var/demo-model && python -m demo.model evaluate var/demo-model
"""
from __future__ import annotations

import json

import pytest

from ai.backends import DraftRequest, GenerationSettings, inspect_checkpoint
from ai.backends.janus import JanusBackend
from demo import model as demo_model

SMALL = demo_model.Shape(image_size=64, patch_size=16, vision_hidden=64, vision_layers=1, vision_heads=2,
                         text_hidden=64, text_layers=2, text_heads=2, text_intermediate=128, vocab_size=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "model"
    lines = []
    facts = demo_model.train_demo_model(
        path, n_images=12, vision_steps=10, steps=25, minutes=None, seed=3, image_size=128, batch_size=6,
        vision_batch_size=12, shape=SMALL, learning_rate=3e-3, threads=2,
        progress=lambda stage, fraction, line: lines.append((stage, fraction, line)))
    return path, facts, lines


def test_a_short_training_run_lowers_the_loss(trained):
    _, facts, lines = trained
    joint = [h for h in facts["history"] if h[0] == "model"]
    first = sum(h[2] + h[3] for h in joint[:3]) / 3
    last = sum(h[2] + h[3] for h in joint[-3:]) / 3
    assert (facts["vision_steps"], facts["steps"]) == (10, 25)
    assert last < 0.6 * first
    assert {stage for stage, _, _ in lines} >= {"phantoms", "vision", "training", "done"}


def test_the_trained_folder_loads_through_the_janus_backend(trained, png):
    path, _, _ = trained
    backend = JanusBackend(str(path), GenerationSettings(max_new_tokens=40))
    drafts = backend.generate([DraftRequest(png(1, size=(128, 128))), DraftRequest(png(2))],
                              findings=list(demo_model.FINDINGS))
    assert all(d.text for d in drafts)
    assert all(set(d.finding_scores) == set(demo_model.FINDINGS) for d in drafts)
    info = inspect_checkpoint(str(path))
    assert info.n_parameters > 0 and len(info.sha256) == 64


def test_the_demo_model_says_it_is_not_for_clinical_use(trained):
    path, facts, _ = trained
    config = json.loads((path / "config.json").read_text())
    assert "never for clinical use" in config["demo_notice"]
    assert "synthetic" in config["demo_notice"]
    readme = (path / "README.md").read_text()
    assert "never for clinical use" in readme and '"steps": 25' in readme


def test_evaluation_reports_label_f1_and_auc(trained):
    path, _, _ = trained
    result = demo_model.evaluate_demo_model(path, n=6, seed=11, size=128, batch_size=6)
    assert 0.0 <= result["label_f1"] <= 1.0
    assert set(result["per_finding"]) == set(demo_model.FINDINGS)
    assert result["n"] == 6


def test_the_tiny_model_is_small_and_quick(tmp_path):
    path = demo_model.build_tiny_model(tmp_path / "tiny")
    info = inspect_checkpoint(str(path))
    assert info.n_parameters < 1_000_000
    assert "tests only" in info.config["demo_notice"]
