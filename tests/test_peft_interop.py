"""swiftlite LoRA == PEFT LoRA: same forward/gradients with identical weights, and checkpoints both ways."""
import json
import re
import warnings

import peft
import pytest
import torch

from swiftlite import Swift, SwiftModel
from swiftlite.testing import models
from swiftlite.tuners.lora import LoRAConfig, LoRATuner

warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")

# name -> (model factory, target_modules, modules_to_save)
SETUPS = {
    "linear": (models.mlp, ["fc1", "fc2"], None),
    "embedding": (models.mlp, ["embed"], None),
    "conv2d": (models.cnn, ["conv1", "conv2"], None),
    "conv1d_gpt2": (models.gpt2, ["c_attn"], None),
    "llama": (models.llama, ["q_proj", "v_proj"], None),
    "mlp_head": (models.mlp, ["embed", "fc1"], ["head"]),
}
VARIANTS = {"lora": {}, "rslora": {"use_rslora": True}, "dora": {"use_dora": True}}


def _out(model, inputs):
    y = model(**inputs)
    return getattr(y, "logits", y)


def _randomize(named_params, seed):
    """Non-zero B and a non-trivial DoRA magnitude, so every part of the adapter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in named_params:
            if "lora_" in name or "modules_to_save" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _lora_params(named_params, prefix=""):
    return {n[len(prefix):]: p for n, p in named_params if ("lora_" in n or ".modules_to_save." in n)}


def _peft_config(targets, to_save, variant):
    return peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=to_save, **variant)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("setup", list(SETUPS))
def test_forward_and_gradients_equal_peft_with_identical_weights(setup, variant):
    factory, targets, to_save = SETUPS[setup]
    pm = peft.get_peft_model(factory()[0], _peft_config(targets, to_save, VARIANTS[variant]))
    model, inputs = factory()
    sm = Swift.prepare_model(model, LoRAConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=to_save,
                                               **VARIANTS[variant]))
    ours = _lora_params(sm.base_model.named_parameters())
    theirs = _lora_params(pm.named_parameters(), prefix="base_model.model.")
    assert sorted(ours) == sorted(theirs)  # identical parameter names
    for name in ours:
        assert ours[name].shape == theirs[name].shape, name
    _randomize(pm.named_parameters(), seed=0)
    with torch.no_grad():
        for name, p in ours.items():
            p.copy_(theirs[name])
    y_peft, y_ours = _out(pm, inputs), _out(sm, inputs)
    torch.testing.assert_close(y_ours, y_peft, rtol=1e-5, atol=1e-5)
    y_peft.square().mean().backward()
    y_ours.square().mean().backward()
    for name in ours:
        torch.testing.assert_close(ours[name].grad, theirs[name].grad, rtol=1e-4, atol=1e-6, msg=name)
    # merged weights agree too
    with torch.no_grad():
        pm.merge_adapter()
        sm.merge()
        torch.testing.assert_close(_out(sm, inputs), _out(pm, inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["lora", "dora"])
@pytest.mark.parametrize("setup", ["llama", "conv1d_gpt2", "mlp_head", "conv2d"])
def test_swiftlite_checkpoint_loads_in_peft(setup, variant, tmp_path):
    factory, targets, to_save = SETUPS[setup]
    model, inputs = factory()
    sm = Swift.prepare_model(model, LoRAConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=to_save,
                                               **VARIANTS[variant]))
    _randomize(sm.base_model.named_parameters(), seed=1)
    y = _out(sm, inputs)
    sm.save_pretrained(str(tmp_path / "peft"), peft_format=True)
    sm.save_pretrained(str(tmp_path / "swift"))
    Swift.save_to_peft_format(str(tmp_path / "swift"), str(tmp_path / "converted"))
    for folder in ("peft", "converted"):
        config = json.load(open(tmp_path / folder / "adapter_config.json"))
        assert config["peft_type"] == "LORA" and config["use_dora"] == (variant == "dora")
        pm = peft.PeftModel.from_pretrained(factory()[0], str(tmp_path / folder))
        torch.testing.assert_close(_out(pm, inputs), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["lora", "dora", "rslora"])
@pytest.mark.parametrize("setup", ["llama", "conv1d_gpt2", "mlp_head", "conv2d", "embedding"])
def test_peft_checkpoint_loads_in_swiftlite(setup, variant, tmp_path):
    factory, targets, to_save = SETUPS[setup]
    model, inputs = factory()
    config = _peft_config(targets, to_save, VARIANTS[variant])
    config.init_lora_weights = False
    pm = peft.get_peft_model(model, config)
    _randomize(pm.named_parameters(), seed=2)
    pm.eval()
    y = _out(pm, inputs)
    pm.save_pretrained(str(tmp_path))
    sm = Swift.from_pretrained(factory()[0], str(tmp_path))
    assert isinstance(sm, SwiftModel)
    cfg = sm.adapters["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.use_dora, cfg.use_rslora) == (4, 8, variant == "dora", variant == "rslora")
    torch.testing.assert_close(_out(sm, inputs), y, rtol=1e-5, atol=1e-5)
    # and back: the PEFT-format save of the loaded model holds the same keys and values as PEFT's own
    from safetensors.torch import load_file

    sm.save_pretrained(str(tmp_path / "again"), peft_format=True)
    theirs, ours = load_file(tmp_path / "adapter_model.safetensors"), load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0)


def test_to_peft_config_fields_are_accepted_by_peft():
    config = LoRAConfig(r=4, lora_alpha=16, target_modules=r".*\.(q|v)_proj", lora_dropout=0.1, use_rslora=True,
                        modules_to_save=["lm_head"])
    peft_dict, _ = LoRATuner.to_peft(config, {}, "default")
    loaded = peft.LoraConfig.from_peft_type(**peft_dict)
    assert (loaded.r, loaded.lora_alpha, loaded.target_modules, loaded.lora_dropout, loaded.use_rslora) == (
        4, 16, r".*\.(q|v)_proj", 0.1, True)
    assert peft_dict["task_type"] is None and peft_dict["peft_type"] == "LORA"
    back, _ = LoRATuner.from_peft(peft_dict, {}, "default")
    assert back.to_dict() == config.to_dict()


def test_from_peft_rejects_unsupported_options():
    peft_dict = peft.LoraConfig(r=4, target_modules=["fc1"], lora_bias=True).to_dict()
    with pytest.raises(ValueError, match="lora_bias"):
        LoRATuner.from_peft(peft_dict, {}, "default")
    supported = peft.LoraConfig(r=4, target_modules=["fc1"], rank_pattern={"fc1": 2}).to_dict()  # tests/test_lora_patterns.py
    assert LoRATuner.from_peft(supported, {}, "default")[0].rank_pattern == {"fc1": 2}


# ---- real PEFT saves on transformers models, both directions ---------------------------------------
# name -> (model factory, target_modules, modules_to_save); together they cover every LoRA layer type:
# Linear (q_proj, lm_head, v_proj), Embedding (embed_tokens, wte), Conv1D (GPT-2's c_attn / c_fc),
# Conv2d (ViT's patch projection); modules_to_save by PEFT's plain suffix ("head" is llama's lm_head).
HF_SETUPS = {
    "llama_linear": (models.llama, ["q_proj", "v_proj", "down_proj"], None),
    "llama_embed_tokens_lm_head": (models.llama, ["embed_tokens", "lm_head", "q_proj"], None),  # PEFT saves their base weights
    "llama_head_suffix": (models.llama, ["q_proj"], ["head"]),
    "gpt2_conv1d_wte": (models.gpt2, ["c_attn", "c_fc", "wte"], None),
    "vit_conv2d_classifier": (models.vit, ["projection", "q_proj", "v_proj"], ["classifier"]),
}


def _hf_config(setup, variant, **kw):
    _, targets, to_save = HF_SETUPS[setup]
    return dict(r=4, lora_alpha=8, target_modules=targets, modules_to_save=to_save, **VARIANTS[variant], **kw)


def _safetensors_keys(path):
    from safetensors.torch import load_file

    return load_file(path)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("setup", list(HF_SETUPS))
def test_real_peft_save_loads_in_swiftlite(setup, variant, tmp_path):
    factory = HF_SETUPS[setup][0]
    model, inputs = factory()
    pm = peft.get_peft_model(model, peft.LoraConfig(**_hf_config(setup, variant)))
    _randomize(pm.named_parameters(), seed=3)
    pm.eval()
    y = _out(pm, inputs)
    pm.save_pretrained(str(tmp_path))
    saved = _safetensors_keys(tmp_path / "adapter_model.safetensors")
    if setup == "llama_embed_tokens_lm_head":  # the case that used to be rejected
        assert "base_model.model.model.embed_tokens.base_layer.weight" in saved
        assert "base_model.model.lm_head.base_layer.weight" in saved
    if setup == "llama_head_suffix":
        assert "base_model.model.lm_head.weight" in saved
    sm = Swift.from_pretrained(factory()[0], str(tmp_path))
    assert isinstance(sm, SwiftModel)
    cfg = sm.adapters["default"]
    assert (cfg.use_dora, cfg.use_rslora) == (variant == "dora", variant == "rslora")
    torch.testing.assert_close(_out(sm, inputs), y, rtol=1e-5, atol=1e-5)
    # the same parameters, under the same names as PEFT's (adapter name and wrappers aside)
    ours = _lora_params(sm.base_model.named_parameters())
    theirs = _lora_params(pm.named_parameters(), prefix="base_model.model.")
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0, msg=name)
    # and back out in PEFT's format: PEFT's own keys and values, less the frozen base weights swiftlite never writes
    sm.save_pretrained(str(tmp_path / "again"), peft_format=True)
    again = _safetensors_keys(tmp_path / "again" / "adapter_model.safetensors")
    assert sorted(again) == sorted(k for k in saved if ".base_layer." not in k)
    for key in again:
        torch.testing.assert_close(again[key], saved[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("setup", list(HF_SETUPS))
def test_swiftlite_peft_format_save_loads_in_real_peft(setup, variant, tmp_path):
    factory = HF_SETUPS[setup][0]
    model, inputs = factory()
    sm = Swift.prepare_model(model, LoRAConfig(**_hf_config(setup, variant)))
    _randomize(sm.base_model.named_parameters(), seed=4)
    y = _out(sm, inputs)
    sm.save_pretrained(str(tmp_path), peft_format=True)
    pm = peft.PeftModel.from_pretrained(factory()[0], str(tmp_path))
    pm.eval()
    torch.testing.assert_close(_out(pm, inputs), y, rtol=1e-5, atol=1e-5)
    ours = _lora_params(sm.base_model.named_parameters())
    theirs = _lora_params(pm.named_parameters(), prefix="base_model.model.")
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        torch.testing.assert_close(theirs[name], ours[name], rtol=0, atol=0, msg=name)


def _two_peft_configs():
    """Two adapters on one llama: DoRA on attention + the embedding, rsLoRA on the MLP + a trained lm_head copy."""
    return {"default": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "embed_tokens"], use_dora=True),
            "second": dict(r=2, lora_alpha=4, target_modules=["v_proj", "up_proj"], use_rslora=True,
                           modules_to_save=["lm_head"])}


def test_two_adapters_real_peft_save_loads_in_swiftlite(tmp_path):
    model, inputs = models.llama()
    configs = _two_peft_configs()
    pm = peft.get_peft_model(model, peft.LoraConfig(**configs["default"]))
    pm.add_adapter("second", peft.LoraConfig(**configs["second"]))
    _randomize(pm.named_parameters(), seed=5)
    pm.eval()
    expected = {}
    for name in configs:
        pm.set_adapter(name)
        expected[name] = _out(pm, inputs)
    pm.save_pretrained(str(tmp_path))
    assert (tmp_path / "second" / "adapter_config.json").is_file()  # PEFT's layout: default on top, others below
    sm = Swift.from_pretrained(models.llama()[0], str(tmp_path))
    assert sorted(sm.adapters) == ["default", "second"]
    assert sm.adapters["default"].use_dora and sm.adapters["second"].use_rslora
    for name in configs:
        sm.set_active_adapters([name])
        torch.testing.assert_close(_out(sm, inputs), expected[name], rtol=1e-5, atol=1e-5, msg=name)
    assert not torch.allclose(expected["default"], expected["second"])  # the two adapters really differ


def test_two_adapters_swiftlite_peft_format_loads_in_real_peft(tmp_path):
    model, inputs = models.llama()
    configs = _two_peft_configs()
    sm = Swift.prepare_model(model, {name: LoRAConfig(**kw) for name, kw in configs.items()})
    _randomize(sm.base_model.named_parameters(), seed=6)
    expected = {}
    for name in configs:
        sm.set_active_adapters([name])
        expected[name] = _out(sm, inputs)
    sm.save_pretrained(str(tmp_path), peft_format=True)
    pm = peft.PeftModel.from_pretrained(models.llama()[0], str(tmp_path))
    pm.load_adapter(str(tmp_path / "second"), adapter_name="second")
    pm.eval()
    for name in configs:
        pm.set_adapter(name)
        torch.testing.assert_close(_out(pm, inputs), expected[name], rtol=1e-5, atol=1e-5, msg=name)


def test_peft_saved_base_embedding_is_loaded_into_the_base_layer_as_peft_does(tmp_path):
    """PEFT saves embed_tokens' frozen weight with an embedding LoRA and loads it back into the base layer.
    Loading onto a model whose embedding differs must give what PEFT's own loading gives."""
    model, inputs = models.llama()
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj"]))
    _randomize(pm.named_parameters(), seed=7)
    pm.save_pretrained(str(tmp_path))
    saved_embedding = model.model.embed_tokens.base_layer.weight.detach().clone()

    def other_base():  # the same architecture, a different embedding table
        base = models.llama()[0]
        with torch.no_grad():
            base.model.embed_tokens.weight.add_(1.0)
        return base

    reference = peft.PeftModel.from_pretrained(other_base(), str(tmp_path)).eval()
    sm = Swift.from_pretrained(other_base(), str(tmp_path))
    torch.testing.assert_close(sm.base_model.model.embed_tokens.base_layer.weight, saved_embedding, rtol=0, atol=0)
    torch.testing.assert_close(_out(sm, inputs), _out(reference, inputs), rtol=1e-5, atol=1e-5)


def test_peft_checkpoint_with_a_stray_key_is_rejected_by_name():
    peft_dict = peft.LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["head"]).to_dict()
    _, weights = LoRATuner.from_peft(peft_dict, {"base_model.model.lm_head.weight": torch.zeros(2)}, "default")
    assert list(weights) == ["lm_head.weight"]  # PEFT's plain suffix: "head" matches lm_head
    with pytest.raises(ValueError, match="model.norm.weight.*neither a LORA weight.*nor in modules_to_save"):
        LoRATuner.from_peft(peft_dict, {"base_model.model.model.norm.weight": torch.zeros(2)}, "default")


def test_peft_init_lora_weights_gaussian_loads_and_base_changing_inits_are_refused(tmp_path):
    model, inputs = models.llama()
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights="gaussian"))
    _randomize(pm.named_parameters(), seed=8)
    pm.eval()
    pm.save_pretrained(str(tmp_path))
    sm = Swift.from_pretrained(models.llama()[0], str(tmp_path))
    assert sm.adapters["default"].init_lora_weights == "gaussian"
    torch.testing.assert_close(_out(sm, inputs), _out(pm, inputs), rtol=1e-5, atol=1e-5)
    pissa = peft.LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights="pissa").to_dict()
    with pytest.raises(ValueError, match="init_lora_weights='pissa'.*peft.PeftModel.from_pretrained"):
        LoRATuner.from_peft(pissa, {}, "default")


def test_save_to_peft_format_keeps_a_real_peft_checkpoint_with_base_weights_as_is(tmp_path):
    pm = peft.get_peft_model(models.llama()[0], peft.LoraConfig(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj"],
                                                                modules_to_save=["head"]))
    _randomize(pm.named_parameters(), seed=9)
    pm.save_pretrained(str(tmp_path / "peft"))
    Swift.save_to_peft_format(str(tmp_path / "peft"), str(tmp_path / "again"))
    theirs = _safetensors_keys(tmp_path / "peft" / "adapter_model.safetensors")
    ours = _safetensors_keys(tmp_path / "again" / "adapter_model.safetensors")
    assert sorted(ours) == sorted(theirs) and any(".base_layer." in k for k in ours)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)


def test_a_tuner_without_peft_spec_says_what_it_needs():
    from swiftlite.tuners import AdapterConfig, AdapterTuner

    with pytest.raises(ValueError, match="AdapterTuner: .*peft_type.*peft_spec"):
        AdapterTuner.to_peft(AdapterConfig(dim=8, target_modules=["fc"]), {}, "default")


@pytest.mark.parametrize("source", ["peft", "ms_swift_lora", "ms_swift_adapter"])
def test_unset_unknown_fields_warn_in_one_short_line(source):
    """A PEFT / ms-swift config carries ~25 fields swiftlite does not implement, all unset: one short
    warning line with their count, not the list of every name."""
    from pathlib import Path

    from swiftlite.core.config import SwiftConfig

    if source == "peft":
        data = {**peft.LoraConfig(r=4, target_modules=["q_proj"]).to_dict(), "swift_type": "LORA"}
    else:
        folder = Path(__file__).parent / "fixtures" / "ms_swift" / source.removeprefix("ms_swift_")
        data = json.loads(next(folder.rglob("adapter_config.json")).read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SwiftConfig.from_dict(data)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    (message,) = messages
    assert "\n" not in message and len(message) <= 130, message
    assert re.search(r"ignoring \d+ unset field", message)
