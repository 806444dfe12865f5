"""ms-swift parity: checkpoint layout, canonical keys, `.model`, extra states, NEFTune, PEFT conversion."""
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from swiftlite import LoRAConfig, Swift, SwiftModel
from swiftlite.api.checkpoint import read_adapters
from swiftlite.testing import models, output_tensor
from swiftlite.tuners.adapter import AdapterConfig
from swiftlite.tuners.neftune import NEFTuneConfig
from swiftlite.tuners.part import PartConfig
from swiftlite.tuners.side import SideConfig


def out(model, inputs):
    with torch.no_grad():
        return output_tensor(model(**inputs))


def randomize(model, seed=0):
    """Give every trainable tuner weight a random value, so that a lost weight shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in model.adapters:
            for p in model.adapter_parameters(name).values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


# ---- 1. layout --------------------------------------------------------------------------------
def test_every_adapter_default_included_gets_its_own_folder(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {"default": LoRAConfig(target_modules=["fc1"]),
                                     "other": LoRAConfig(target_modules=["fc2"])})
    randomize(sm)
    y = out(sm, inputs)
    sm.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["default", "other"]
    assert json.loads((tmp_path / "default" / "adapter_config.json").read_text())["swift_type"] == "LORA"
    found = read_adapters(str(tmp_path))
    assert {n: f for n, (_, f) in found.items()} == {"default": str(tmp_path / "default"), "other": str(tmp_path / "other")}
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    assert sorted(loaded.adapters) == ["default", "other"]
    torch.testing.assert_close(out(loaded, inputs), y)


def test_old_top_level_layout_still_loads(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]))
    randomize(sm)
    sm.save_pretrained(tmp_path)
    for name in os.listdir(tmp_path / "default"):  # move "default" to the top, as older swiftlite wrote it
        os.rename(tmp_path / "default" / name, tmp_path / name)
    os.rmdir(tmp_path / "default")
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    torch.testing.assert_close(out(loaded, inputs), out(sm, inputs))
    # saving again over it writes the new layout and drops the stale top-level copy
    loaded.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["default"]


def test_peft_format_puts_default_at_the_top_and_read_adapters_touches_no_model(tmp_path):
    model, _ = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]))
    sm.save_pretrained(tmp_path, peft_format=True)
    assert sorted(os.listdir(tmp_path)) == ["adapter_config.json", "adapter_model.safetensors"]
    ((name, (config, folder)),) = read_adapters(str(tmp_path)).items()
    assert (name, config["peft_type"], folder) == ("default", "LORA", str(tmp_path))


# ---- 2. canonical keys ------------------------------------------------------------------------
LORA_Q = dict(target_modules=["query"], r=2)
OTHERS = {
    "adapter": lambda: AdapterConfig(dim=32, target_modules=r"encoder\.layer\.0", method_name="feed_forward_chunk",
                                     adapter_length=4),
    "part": lambda: PartConfig(target_modules=r"encoder\.layer\.0\.attention"),
    "side": lambda: SideConfig(dim=32, target_modules=r"encoder\.layer\.0", side_module_name="mlp"),
}


def _bert_with(order, other):
    model, inputs = models.bert()
    configs = {"lora": LoRAConfig(**LORA_Q), "other": OTHERS[other]()}
    sm = Swift.prepare_model(model, {name: configs[name] for name in order})
    return sm, inputs


@pytest.mark.parametrize("other", sorted(OTHERS))
def test_keys_do_not_depend_on_other_wrappers(other, tmp_path):
    alone, _ = models.bert()
    alone = Swift.prepare_model(alone, {"lora": LoRAConfig(**LORA_Q)})
    expected = set(alone.state_dict(adapter_name="lora"))
    assert "encoder.layer.0.attention.self.query.lora_A.lora.weight" in expected
    for order in (("lora", "other"), ("other", "lora")):
        sm, _ = _bert_with(order, other)
        live = [n for n, _ in sm.base_model.named_parameters() if "query.lora_A.lora" in n]
        assert any(".base_layer." in n.split("query")[0] for n in live), live  # another wrapper is in the path
        # (a Part copy made after LoRA holds a copy of it: that belongs to the Part adapter)
        assert set(sm.state_dict(adapter_name="lora")) == expected
        assert not any("base_layer" in k for k in sm.state_dict())


@pytest.mark.parametrize("other", sorted(OTHERS))
@pytest.mark.parametrize("save_order", [("lora", "other"), ("other", "lora")])
def test_save_in_one_order_load_in_either(other, save_order, tmp_path):
    sm, inputs = _bert_with(save_order, other)
    randomize(sm)
    y = out(sm, inputs)
    sm.save_pretrained(tmp_path)
    for load_order in (("lora", "other"), ("other", "lora")):
        if other == "part" and load_order != save_order:
            # A Part copy made before or after LoRA holds LoRA or not: a different model, not a key question.
            continue
        fresh, _ = _bert_with(load_order, other)
        fresh.load_state_dict(Swift.from_pretrained(models.bert()[0], str(tmp_path), adapter_name="lora")
                              .state_dict(adapter_name="lora"), adapter_name="lora")
        fresh.load_state_dict(sm.state_dict(adapter_name="other"), adapter_name="other")
        torch.testing.assert_close(out(fresh, inputs), y, msg=f"{other}: saved {save_order}, loaded {load_order}")


# ---- 3. .model ----------------------------------------------------------------------------------
def test_model_attribute_is_the_wrapped_model():
    model, inputs = models.llama()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj"]))
    assert sm.model is model and sm.base_model is model
    assert sm.model.model.layers is model.model.layers  # ms-swift code: model.model.model.layers
    assert sm.config is model.config and sm.get_input_embeddings() is model.get_input_embeddings()


# ---- 4. adapter_parameters ------------------------------------------------------------------
def test_adapter_parameters_is_public_and_canonical():
    sm, _ = _bert_with(("other", "lora"), "adapter")
    params = sm.adapter_parameters("lora")
    assert set(params) == set(sm.state_dict(adapter_name="lora"))
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in params.values())
    with pytest.raises(ValueError, match="unknown"):
        sm.adapter_parameters("nope")


# ---- 5. extra states ----------------------------------------------------------------------------
def test_extra_states_are_trainable_again_and_edited_values_load(tmp_path):
    from safetensors.torch import load_file, save_file

    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]), extra_state_keys=[r"head\..*"])
    sm.save_pretrained(tmp_path)
    path = tmp_path / "extra_states" / "adapter_model.safetensors"
    state = load_file(path)
    assert set(state) == {"head.weight", "head.bias"}
    state["head.bias"] = torch.full_like(state["head.bias"], 3.0)
    save_file(state, path)
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path), inference_mode=False)
    torch.testing.assert_close(loaded.base_model.head.bias, torch.full((4,), 3.0))
    assert loaded.base_model.head.weight.requires_grad and loaded.base_model.head.bias.requires_grad
    assert not loaded.base_model.fc2.weight.requires_grad
    assert "head.bias" in loaded.state_dict()  # and they are saved again
    frozen = Swift.from_pretrained(models.mlp()[0], str(tmp_path))  # inference_mode=True
    assert not frozen.base_model.head.bias.requires_grad


# ---- 6. NEFTune and tuners without parameters -----------------------------------------------------
def test_a_tuner_without_parameters_writes_only_its_config(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {"lora": LoRAConfig(target_modules=["fc1"]), "noise": NEFTuneConfig()})
    sm.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path / "noise")) == ["adapter_config.json"]
    assert sorted(os.listdir(tmp_path)) == ["lora", "noise"]  # the base is not saved: LoRA carries the training
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    assert sorted(loaded.adapters) == ["lora", "noise"]


def test_neftune_alone_saves_the_plain_base_state_dict(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, NEFTuneConfig())
    with torch.no_grad():
        model.fc2.weight.add_(1.0)  # NEFTune alone means the base itself was trained
    sm.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["adapter_model.safetensors", "default"]
    assert sorted(os.listdir(tmp_path / "default")) == ["adapter_config.json"]
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "adapter_model.safetensors")) == set(models.mlp()[0].state_dict())
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    assert type(loaded.adapters["default"]).__name__ == "NEFTuneConfig"
    torch.testing.assert_close(out(loaded.eval(), inputs), out(sm.eval(), inputs))


def test_neftune_alone_on_a_transformers_model_saves_through_its_save_pretrained(tmp_path):
    model, inputs = models.llama()
    sm = Swift.prepare_model(model, NEFTuneConfig())
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(2.0)
    sm.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "default"} <= files and "adapter_model.safetensors" not in files
    from transformers import LlamaForCausalLM

    reloaded = LlamaForCausalLM.from_pretrained(str(tmp_path)).eval()  # the base model's own loader reads it
    torch.testing.assert_close(out(reloaded, inputs), out(sm.eval(), inputs))
    loaded = Swift.from_pretrained(reloaded, str(tmp_path))
    assert type(loaded.adapters["default"]).__name__ == "NEFTuneConfig"
    torch.testing.assert_close(out(loaded.eval(), inputs), out(sm.eval(), inputs))


# ---- 7. save_to_peft_format --------------------------------------------------------------------
def _peft_out(folder, inputs):
    import peft

    pm = peft.PeftModel.from_pretrained(models.mlp()[0], folder)
    return out(pm, inputs)


def test_save_to_peft_format_is_idempotent(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1", "fc2"]))
    randomize(sm)
    y = out(sm, inputs)
    sm.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "README.md").write_text("trained on ...")  # comes along, as in ms-swift
    Swift.save_to_peft_format(str(tmp_path / "ckpt"), str(tmp_path / "peft"))
    first = {f: (tmp_path / "peft" / f).read_bytes() for f in os.listdir(tmp_path / "peft")}
    assert sorted(first) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    torch.testing.assert_close(_peft_out(str(tmp_path / "peft"), inputs), y)
    Swift.save_to_peft_format(str(tmp_path / "ckpt"), str(tmp_path / "peft"))  # twice
    Swift.save_to_peft_format(str(tmp_path / "peft"), str(tmp_path / "peft"))  # on its own output
    assert {f: (tmp_path / "peft" / f).read_bytes() for f in os.listdir(tmp_path / "peft")} == first
    Swift.save_to_peft_format(str(tmp_path / "ckpt"), str(tmp_path / "ckpt"))  # in place
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    torch.testing.assert_close(_peft_out(str(tmp_path / "ckpt"), inputs), y)
    torch.testing.assert_close(out(Swift.from_pretrained(models.mlp()[0], str(tmp_path / "ckpt")), inputs), y)


def test_save_to_peft_format_refuses_other_tuners_with_assertion_error(tmp_path):
    model, _ = models.mlp()
    Swift.prepare_model(model, AdapterConfig(dim=24, target_modules=["fc2"], adapter_length=4)).save_pretrained(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(AssertionError, match="only LoRA"):
        Swift.save_to_peft_format(str(tmp_path), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == before


# ---- 8. PEFT vs swiftlite is decided first ------------------------------------------------------
def test_from_pretrained_decides_peft_before_loading_anything(tmp_path):
    import peft

    model, _ = models.llama()
    pm = peft.get_peft_model(model, peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                                  feedforward_modules=["down_proj"]))
    pm.save_pretrained(tmp_path)
    base, _ = models.llama()
    Swift.prepare_model(base, {"mine": LoRAConfig(target_modules=["q_proj"])}).save_pretrained(tmp_path)
    assert {"adapter_config.json", "mine"} <= set(os.listdir(tmp_path))  # PEFT's files were kept
    # a directory mixing a PEFT-only adapter with a swiftlite one is refused before the model changes
    fresh, _ = models.llama()
    keys = set(fresh.state_dict())
    with pytest.raises(ValueError, match="load only through PEFT"):
        Swift.from_pretrained(fresh, str(tmp_path))
    assert set(fresh.state_dict()) == keys and all(p.requires_grad for p in fresh.parameters())
    loaded = Swift.from_pretrained(models.llama()[0], str(tmp_path), adapter_name="default")
    assert isinstance(loaded, peft.PeftModel)
    sm = Swift.from_pretrained(models.llama()[0], str(tmp_path), adapter_name="mine")
    assert isinstance(sm, SwiftModel) and list(sm.adapters) == ["mine"]


# ---- from_pretrained(adapter_name={saved: new}) and ms-swift's extra_states/adapter_config.json ------
@pytest.mark.parametrize("config", [
    lambda: LoRAConfig(target_modules=["fc1"], modules_to_save=["head"]),
    lambda: AdapterConfig(dim=24, target_modules=["fc2"], adapter_length=4),
    lambda: PartConfig(target_modules=["fc2"]),
])
def test_rename_on_load_follows_ms_swift_saved_to_new(config, tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {"saved": config()})
    randomize(sm)
    sm.save_pretrained(tmp_path)
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path), adapter_name={"saved": "new"})
    assert list(loaded.adapters) == ["new"]
    torch.testing.assert_close(out(loaded, inputs), out(sm, inputs))
    with pytest.raises(ValueError, match="'new' is not in"):  # the key is the folder to read
        Swift.from_pretrained(models.mlp()[0], str(tmp_path), adapter_name={"new": "saved"})


def test_extra_state_keys_are_saved_beside_the_weights_as_ms_swift_does(tmp_path):
    model, _ = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]), extra_state_keys=[r"head\..*"])
    sm.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "extra_states" / "adapter_config.json").read_text()) == {"extra_state_keys": [r"head\..*"]}
    assert sorted(read_adapters(str(tmp_path))) == ["default"]  # not an adapter
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path), inference_mode=False)
    assert loaded.extra_state_keys == [r"head\..*"]


def test_from_pretrained_takes_extra_state_keys_as_ms_swift_does(tmp_path):
    model, _ = models.mlp()
    Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"])).save_pretrained(tmp_path)
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path), inference_mode=False, extra_state_keys=[r"norm\..*"])
    assert loaded.base_model.norm.weight.requires_grad and not loaded.base_model.head.weight.requires_grad
    assert "norm.weight" in loaded.state_dict()
    with pytest.raises(ValueError, match="matched no parameter"):
        Swift.from_pretrained(models.mlp()[0], str(tmp_path), extra_state_keys=["nothing"])
