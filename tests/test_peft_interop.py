"""swiftlite LoRA == PEFT LoRA: same forward/gradients with identical weights, and checkpoints both ways."""
import json
import warnings

import peft
import pytest
import torch

from swiftlite.core import Swift, SwiftModel
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
    peft_dict = peft.LoraConfig(r=4, target_modules=["fc1"], rank_pattern={"fc1": 2}).to_dict()
    with pytest.raises(ValueError, match="rank_pattern"):
        LoRATuner.from_peft(peft_dict, {}, "default")
