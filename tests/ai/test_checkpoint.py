"""inspect_checkpoint: a bad checkpoint is refused with its reason before it is registered; a good one is hashed."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from ai.backends import PermanentModelError, inspect_checkpoint


@pytest.fixture
def checkpoint(tiny_janus_path, tmp_path):
    """A private copy of the tiny checkpoint that a test may damage."""
    return shutil.copytree(tiny_janus_path, tmp_path / "ckpt")


def test_a_good_folder_gives_the_weights_hash_and_parameter_count(checkpoint):
    import torch
    from transformers import JanusForConditionalGeneration

    info = inspect_checkpoint(str(checkpoint))
    with open(checkpoint / "model.safetensors", "rb") as f:
        assert info.sha256 == hashlib.sha256(f.read()).hexdigest()
    assert info.files == {"model.safetensors": info.sha256}
    model = JanusForConditionalGeneration.from_pretrained(checkpoint, local_files_only=True, dtype=torch.float32)
    # the header counts stored tensors; the tied lm_head is stored once
    assert info.n_parameters == sum(p.numel() for p in model.parameters())
    assert info.config["model_type"] == "janus"
    assert info.config["text"]["hidden_size"] == 64
    assert "never for clinical use" in info.config["demo_notice"]


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(PermanentModelError, match="no checkpoint folder"):
        inspect_checkpoint(str(tmp_path / "nowhere"))


def test_a_file_instead_of_a_folder_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(PermanentModelError, match="is a file, not a checkpoint folder"):
        inspect_checkpoint(str(tmp_path / "weights.bin"))


def test_a_missing_config_is_refused(checkpoint):
    os.remove(checkpoint / "config.json")
    with pytest.raises(PermanentModelError, match="no config.json.*convert_janus_weights_to_hf"):
        inspect_checkpoint(str(checkpoint))


def test_a_config_that_is_not_json_is_refused(checkpoint):
    (checkpoint / "config.json").write_text("{ not json")
    with pytest.raises(PermanentModelError, match="not readable JSON"):
        inspect_checkpoint(str(checkpoint))


def test_another_architecture_is_refused(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(PermanentModelError, match="describes a llama model.*LlamaForCausalLM.*not Janus"):
        inspect_checkpoint(str(checkpoint))


def test_the_original_deepseek_format_is_refused_with_the_conversion_hint(checkpoint):
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "multi_modality"}))
    with pytest.raises(PermanentModelError, match="not Janus.*convert_janus_weights_to_hf"):
        inspect_checkpoint(str(checkpoint))


def test_missing_weights_are_refused(checkpoint):
    os.remove(checkpoint / "model.safetensors")
    with pytest.raises(PermanentModelError, match="has no weights"):
        inspect_checkpoint(str(checkpoint))


def test_truncated_weights_are_refused(checkpoint):
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(PermanentModelError, match="model.safetensors is truncated"):
        inspect_checkpoint(str(checkpoint))


def test_garbage_weights_are_refused(checkpoint):
    (checkpoint / "model.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(PermanentModelError, match="model.safetensors is not a valid safetensors file"):
        inspect_checkpoint(str(checkpoint))


def test_a_missing_shard_is_refused(checkpoint):
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    os.rename(checkpoint / "model.safetensors", checkpoint / "model-00001-of-00002.safetensors")
    with pytest.raises(PermanentModelError, match="lacks weight shard.*model-00002-of-00002"):
        inspect_checkpoint(str(checkpoint))


def test_weights_of_another_layout_are_refused(checkpoint):
    import torch
    from safetensors.torch import save_file

    save_file({"language_model.model.embed_tokens.weight": torch.zeros(4, 4)}, str(checkpoint / "model.safetensors"))
    with pytest.raises(PermanentModelError, match="layout of transformers' Janus model"):
        inspect_checkpoint(str(checkpoint))


def test_a_folder_without_a_processor_is_refused(checkpoint):
    os.remove(checkpoint / "processor_config.json")
    with pytest.raises(PermanentModelError, match="no processor_config.json"):
        inspect_checkpoint(str(checkpoint))


def test_the_backend_refuses_to_load_a_damaged_checkpoint(checkpoint, png):
    from ai.backends import DraftRequest, GenerationSettings
    from ai.backends.janus import JanusBackend

    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PermanentModelError, match="could not be loaded"):
        JanusBackend(str(checkpoint), GenerationSettings()).generate([DraftRequest(png())], findings=[])
