"""NEFTune: noise statistics against the paper's formula, eval == base, targeting, conformance kit."""
import math
import os

import pytest
import torch
import torch.nn as nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import Swift
from swiftlite.testing import check_tuner, models
from swiftlite.tuners.neftune import NEFTuneConfig, NEFTuneLayer

KIT_CASES = {
    "mlp": lambda: NEFTuneConfig(),  # no get_input_embeddings(): every nn.Embedding ('embed')
    "bert": lambda: NEFTuneConfig(),  # embeddings.word_embeddings
    "llama": lambda: NEFTuneConfig(),  # model.embed_tokens
    "gpt2": lambda: NEFTuneConfig(),  # transformer.wte
    "vit": lambda: NEFTuneConfig(),  # the patch embedding (beyond the paper, which noises token embeddings)
}


@pytest.mark.parametrize("model_name", list(KIT_CASES))
def test_conformance(model_name, tmp_path):
    report = check_tuner(KIT_CASES[model_name], models.MODELS[model_name], tmp_path=str(tmp_path))
    assert "identity" in report.passed and "save_load" in report.passed


@pytest.mark.parametrize("model_name, expected", [
    ("mlp", "embed"), ("bert", "embeddings.word_embeddings"), ("llama", "model.embed_tokens"), ("gpt2", "transformer.wte"),
])
def test_targets_input_embedding(model_name, expected):
    assert NEFTuneConfig().matched_modules(models.MODELS[model_name]()[0]) == [expected]


def test_noise_statistics_follow_the_formula():
    torch.manual_seed(0)
    B, L, d, alpha = 8, 64, 128, 5.0
    emb = nn.Embedding(100, d)
    model = Swift.prepare_model(nn.ModuleDict({"embed": emb}), NEFTuneConfig(noise_alpha=alpha, target_modules=["embed"]))
    layer = model.base_model["embed"]
    ids = torch.randint(0, 100, (B, L))
    clean = emb(ids).detach()
    layer.train()
    noise = (layer(ids) - clean).detach()
    magnitude = alpha / math.sqrt(L * d)
    # ε ~ U(−1, 1) scaled by α/√(L·d): bounded by the magnitude, mean 0, std magnitude/√3
    assert noise.abs().max() <= magnitude * (1 + 1e-5)
    assert noise.abs().max() > 0.99 * magnitude
    assert abs(noise.mean().item()) < 0.02 * magnitude
    assert noise.std().item() == pytest.approx(magnitude / math.sqrt(3), rel=0.02)
    # fresh noise every call
    assert not torch.equal(layer(ids), layer(ids))


def test_eval_mode_and_deactivated_are_base():
    base, inputs = models.llama()
    reference = base(**inputs).logits.detach()
    model = Swift.prepare_model(base, NEFTuneConfig(noise_alpha=15.0))
    model.eval()
    torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)
    model.train()
    assert (model(**inputs).logits - reference).abs().max() > 1e-4  # training: noisy
    model.deactivate_adapter("default")
    torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)
    assert isinstance(model.base_model.model.embed_tokens, NEFTuneLayer)
    assert not any(p.requires_grad for p in model.parameters())  # NEFTune trains nothing by itself


def test_generate_still_works_and_no_embedding_is_an_error():
    model = Swift.prepare_model(models.llama()[0], NEFTuneConfig())
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)
    with pytest.raises(ValueError, match="target_modules"):
        Swift.prepare_model(models.cnn()[0], NEFTuneConfig())


def test_combines_with_lora():
    from swiftlite.tuners import LoRAConfig

    base, inputs = models.llama()
    model = Swift.prepare_model(base, {"lora": LoRAConfig(target_modules=["q_proj"]), "neftune": NEFTuneConfig()})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    model.train()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_state_dict_of_a_neftune_only_model_is_the_base_models_whole_state_dict():
    """ms-swift (SwiftModel.state_dict: `if not self.has_additional_modules: return state_dict`): with
    no tuner weights, the state dict is the base model's own, keys as the bare model names them."""
    from swiftlite import LoRAConfig

    base, _ = models.llama()
    expected = {k: v.clone() for k, v in base.state_dict().items()}
    model = Swift.prepare_model(base, NEFTuneConfig())
    state = model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    # it round-trips through load_state_dict (a fully fine-tuned model's weights)
    changed = {k: v + 1.0 if v.is_floating_point() else v for k, v in expected.items()}
    model.load_state_dict(changed)
    assert torch.equal(model.state_dict()["model.embed_tokens.weight"], changed["model.embed_tokens.weight"])
    # offloading a tuner without weights keeps nothing aside: the state dict stays the base model's
    model.deactivate_adapter("default", offload="meta")
    assert model.state_dict().keys() == expected.keys() and not model._offloaded
    model.activate_adapter("default")
    # one adapter with weights: tuner weights only again, as in ms-swift
    model = Swift.prepare_model(model, {"lora": LoRAConfig(r=2, target_modules=["q_proj"])})
    assert model.state_dict() and all(".lora_" in k for k in model.state_dict())
