"""Engine behaviour shared by every tuner: targeting, activation, save/load, merging, errors."""
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn as nn

from swiftlite import LoRAConfig, Swift, SwiftConfig, SwiftModel
from swiftlite.core import Tuner, TunerLayer, register_tuner, tuner_layers
from swiftlite.testing import models, output_tensor


def lora_mlp(**kw):
    model, inputs = models.mlp()
    kw.setdefault("target_modules", ["fc1", "fc2"])
    return Swift.prepare_model(model, LoRAConfig(init_lora_weights=False, **kw)), inputs


def out(model, inputs):
    with torch.no_grad():
        return output_tensor(model(**inputs))


# ---- import and API surface -------------------------------------------------------------------
def test_import_is_light():
    code = "import swiftlite, sys; print(sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_names_importable_both_ways():
    import swiftlite
    import swiftlite.api as api
    import swiftlite.tuners as tuners

    for name in ["SwiftConfig", "LoRAConfig", "register_tuner"]:
        assert getattr(swiftlite, name) is getattr(tuners, name)
    for name in ["Swift", "SwiftModel", "show"]:  # the façade sits above the tuners
        assert getattr(swiftlite, name) is getattr(api, name)


# ---- targeting --------------------------------------------------------------------------------
def test_string_target_must_match_whole_name():
    model, _ = models.mlp()
    assert LoRAConfig(target_modules=r"fc\d").matched_modules(model) == ["fc1", "fc2"]
    with pytest.raises(ValueError, match="matched no module"):
        LoRAConfig(target_modules="fc").matched_modules(model)  # 'fc' is not a full match of 'fc1'


def test_list_target_matches_exact_or_dotted_suffix():
    model, _ = models.llama()
    names = LoRAConfig(target_modules=["q_proj", "layers.1.self_attn.v_proj"]).matched_modules(model)
    assert names == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]


def test_nothing_matched_lists_nearest_names_and_types():
    model, _ = models.llama()
    with pytest.raises(ValueError) as err:
        Swift.prepare_model(model, LoRAConfig(target_modules=["q_prj"]))
    message = str(err.value)
    assert "LoRAConfig.target_modules" in message and "q_proj (Linear)" in message
    assert not list(tuner_layers(model))


def test_wrong_type_is_explained():
    model, _ = models.mlp()
    with pytest.raises(ValueError, match="unsupported types: norm \\(LayerNorm\\)"):
        LoRAConfig(target_modules=["norm"]).matched_modules(model)


# ---- activation -------------------------------------------------------------------------------
def _two_adapter_model():
    model, inputs = lora_mlp()
    Swift.prepare_model(model, {"b": LoRAConfig(target_modules=["fc1", "fc2"], init_lora_weights=False)})
    y = {}
    for name in ("default", "b"):
        model.set_active_adapters(name)
        y[name] = out(model, inputs)
    return model, inputs, y


def test_activation_is_process_wide_by_default():
    model, inputs, y = _two_adapter_model()
    model.set_active_adapters("default")
    seen = []
    t = threading.Thread(target=lambda: seen.append(out(model, inputs)))
    t.start(); t.join()
    torch.testing.assert_close(seen[0], y["default"])


def test_activation_per_thread(monkeypatch):
    monkeypatch.setenv("USE_UNIQUE_THREAD", "0")
    model, inputs, y = _two_adapter_model()
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def worker(name):
        try:
            model.set_active_adapters(name)
            barrier.wait()  # both threads have chosen before either runs
            for _ in range(5):
                results.setdefault(name, []).append(out(model, inputs))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("default", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for name in ("default", "b"):
        for result in results[name]:
            torch.testing.assert_close(result, y[name])


def test_disable_adapter_restores_previous_state():
    model, inputs, y = _two_adapter_model()
    model.set_active_adapters("b")
    base, _ = models.mlp()
    with model.disable_adapter():
        torch.testing.assert_close(out(model, inputs), out(base, inputs))
    torch.testing.assert_close(out(model, inputs), y["b"])
    assert model.active_adapters == ["b"]


@pytest.mark.parametrize("offload", ["cpu", "meta"])
def test_deactivate_with_offload_and_reactivate(offload):
    model, inputs, y = _two_adapter_model()
    model.set_active_adapters("default", offload=offload)
    if offload == "meta":
        assert all(p.is_meta for _, p in model._adapter_named_parameters("b"))
    torch.testing.assert_close(out(model, inputs), y["default"])
    model.set_active_adapters("b")
    torch.testing.assert_close(out(model, inputs), y["b"])


# ---- save / load ------------------------------------------------------------------------------
def _tree(root):
    """{relative path: bytes} of every file under `root`."""
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(root) for f in files}


def test_layout_and_reload_by_name(tmp_path):
    model, inputs, y = _two_adapter_model()
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["b", "default"]  # ms-swift's layout: every adapter in its folder
    for name in ("b", "default"):
        assert sorted(os.listdir(tmp_path / name)) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh, _ = models.mlp()
    loaded = Swift.from_pretrained(fresh, str(tmp_path), adapter_name={"b": "renamed"})  # ms-swift: {saved: new}
    assert list(loaded.adapters) == ["renamed"]
    torch.testing.assert_close(out(loaded, inputs), y["b"])


def test_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model, inputs = lora_mlp()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    before = _tree(ckpt)
    with torch.no_grad():
        for p in model.adapter_parameters("default").values():
            p.add_(1.0)
    import safetensors.torch

    def broken_save(tensors, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(ckpt)
    assert _tree(ckpt) == before  # same files, same bytes
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporaries left beside it


def test_shape_mismatch_names_the_key_and_changes_nothing(tmp_path):
    model, _ = lora_mlp(r=4)
    model.save_pretrained(tmp_path)
    import json

    cfg = json.loads((tmp_path / "default" / "adapter_config.json").read_text())
    cfg["r"] = 2
    (tmp_path / "default" / "adapter_config.json").write_text(json.dumps(cfg))
    fresh, _ = models.mlp()
    with pytest.raises(ValueError, match=r"checkpoint key 'fc1\.lora_A\.default\.weight': shape \(4, 12\)"):
        Swift.from_pretrained(fresh, str(tmp_path))
    assert not list(tuner_layers(fresh))


def test_unknown_key_is_named(tmp_path):
    model, _ = lora_mlp()
    state = model.state_dict(adapter_name="default")
    state["fc9.lora_A.default.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="fc9.lora_A.default.weight"):
        model.load_state_dict(state, adapter_name="default")


def test_pickle_only_checkpoint_loads_through_the_restricted_unpickler(tmp_path):
    model, _ = lora_mlp()
    model.save_pretrained(tmp_path)
    state = model.state_dict(adapter_name="default")
    os.remove(tmp_path / "default" / "adapter_model.safetensors")
    torch.save(state, tmp_path / "default" / "adapter_model.bin")  # tensors only: weights_only=True reads it
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    assert set(loaded.state_dict()) == set(state)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_extra_state_keys_are_trained_and_saved(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]), extra_state_keys=[r"head\..*"])
    assert model.head.weight.requires_grad and not model.fc2.weight.requires_grad
    with torch.no_grad():
        model.head.bias.add_(1.0)
    sm.save_pretrained(tmp_path)
    assert (tmp_path / "extra_states" / "adapter_model.safetensors").exists()
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    torch.testing.assert_close(out(loaded, inputs), out(sm, inputs))


def test_modules_to_save_trains_a_copy(tmp_path):
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"], modules_to_save=["head"]))
    with torch.no_grad():
        sm.base_model.head.modules_to_save["default"].bias.add_(1.0)
    base, _ = models.mlp()
    assert not torch.allclose(out(sm, inputs), out(base, inputs))
    with sm.disable_adapter():
        torch.testing.assert_close(out(sm, inputs), out(base, inputs))
    sm.save_pretrained(tmp_path)
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path))
    torch.testing.assert_close(out(loaded, inputs), out(sm, inputs))


# ---- errors and rollback ----------------------------------------------------------------------
@dataclass
class _FlakyConfig(SwiftConfig):
    swift_type: str = field(default="_TEST_FLAKY")
    target_modules: object = None


class _FlakyLayer(TunerLayer):
    adapter_attrs = ("scale",)

    def __init__(self, base_layer):
        super().__init__(base_layer)
        self.scale = nn.ParameterDict()

    def add_adapter(self, adapter_name, config):
        self.scale[adapter_name] = nn.Parameter(torch.ones(()))

    def forward(self, x):
        y = self.base_layer(x)
        for name in self.active_adapters:
            y = y * self.scale[name]
        return y


@register_tuner
class _FlakyTuner(Tuner):
    """Injects into the first matched module, then fails: used to test rollback."""

    config_class = _FlakyConfig
    layer_class = _FlakyLayer
    not_mergeable_reason = "test tuner."

    @classmethod
    def inject(cls, model, config, adapter_name):
        names = cls.match(model, config)
        super().inject(model, config, adapter_name)
        if len(names) > 1:
            raise RuntimeError("injection failed half way")


def test_failed_injection_leaves_nothing_behind():
    model, inputs = models.mlp()
    before = out(model, inputs)
    keys = set(model.state_dict())
    with pytest.raises(RuntimeError, match="half way"):
        Swift.prepare_model(model, _FlakyConfig(target_modules=["fc1", "fc2"]))
    assert not list(tuner_layers(model)) and set(model.state_dict()) == keys
    torch.testing.assert_close(out(model, inputs), before)


def test_merge_and_unload_refuses_non_mergeable_and_changes_nothing():
    model, inputs = lora_mlp()
    Swift.prepare_model(model, {"flaky": _FlakyConfig(target_modules=["head"])})
    before = out(model, inputs)
    with pytest.raises(ValueError, match="cannot unload non-mergeable adapters: flaky"):
        model.merge_and_unload()
    assert list(model.adapters) == ["default", "flaky"]
    torch.testing.assert_close(out(model, inputs), before)


def test_safe_merge_refuses_nan_and_rolls_back():
    model, inputs = lora_mlp()
    weights = {n: p.clone() for n, p in model.base_model.named_parameters() if "base_layer" in n}
    with torch.no_grad():
        model.base_model.fc2.lora_B["default"].weight[0, 0] = float("nan")  # fc1 merges fine, fc2 fails
    with pytest.raises(ValueError, match="NaN/inf"):
        model.merge()
    for n, p in model.base_model.named_parameters():
        if n in weights:
            torch.testing.assert_close(p, weights[n], msg=n)
    assert all(not layer.merged_adapters for _, layer in tuner_layers(model.base_model))


def test_duplicate_and_bad_adapter_names():
    model, _ = lora_mlp()
    with pytest.raises(ValueError, match="already exists"):
        Swift.prepare_model(model, LoRAConfig(target_modules=["fc1"]))
    with pytest.raises(ValueError, match="adapter_name='a.b'"):
        Swift.prepare_model(model, {"a.b": LoRAConfig(target_modules=["fc1"])})


def test_peft_config_goes_through_peft():
    import peft

    model, _ = models.llama()
    peft_model = Swift.prepare_model(model, peft.LoraConfig(target_modules=["q_proj"], r=2))
    assert isinstance(peft_model, peft.PeftModel)


def test_attributes_fall_through_to_the_base():
    model, _ = models.llama()
    sm = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj"]))
    assert sm.config is model.config
    assert "trainable%" in sm.get_trainable_parameters()
    assert isinstance(sm, SwiftModel)


def test_peft_checkpoint_of_another_method_goes_through_peft(tmp_path):
    import peft

    model, inputs = models.llama()
    peft_model = peft.get_peft_model(model, peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                                                          feedforward_modules=["down_proj"]))
    peft_model.save_pretrained(tmp_path)
    loaded = Swift.from_pretrained(models.llama()[0], str(tmp_path))
    assert isinstance(loaded, peft.PeftModel)
    torch.testing.assert_close(out(loaded, inputs), out(peft_model, inputs))


def test_modules_to_save_for_two_adapters_and_merge_and_unload():
    model, inputs = models.mlp()
    sm = Swift.prepare_model(model, {name: LoRAConfig(target_modules=["fc1"], modules_to_save=["head"])
                                     for name in ("a", "b")})
    head = sm.base_model.head
    assert sorted(head.modules_to_save) == ["a", "b"]  # each adapter owns its own copy
    with torch.no_grad():
        head.modules_to_save["a"].bias.add_(1.0)
        head.modules_to_save["b"].bias.sub_(1.0)
    y = {}
    for name in ("a", "b"):
        sm.set_active_adapters(name)
        y[name] = out(sm, inputs)
    assert not torch.allclose(y["a"], y["b"])
    sm.set_active_adapters("a")
    merged = sm.merge_and_unload()
    assert isinstance(merged.head, nn.Linear)  # the trained copy is kept, not the frozen original
    torch.testing.assert_close(out(merged, inputs), y["a"])


# ---- half-applied state (issue 7) -----------------------------------------------------------------
def _fingerprint(model):
    """Everything a failed call must leave as it was: module tree, weights, requires_grad, HF config."""
    config = getattr(model, "config", None)
    return ([(n, type(m).__name__) for n, m in model.named_modules()],
            {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()},
            config.to_dict() if config is not None else None)


def _assert_same(before, after):
    assert before[0] == after[0] and before[2] == after[2]
    assert before[1].keys() == after[1].keys()
    for name, (value, flag) in before[1].items():
        assert after[1][name][1] == flag, f"{name}: requires_grad changed"
        torch.testing.assert_close(after[1][name][0], value, msg=name, equal_nan=True)


@dataclass
class _ConfigTouchingConfig(_FlakyConfig):
    swift_type: str = field(default="_TEST_CONFIG_TOUCHING")


@register_tuner
class _ConfigTouchingTuner(_FlakyTuner):
    """Writes to the HF config, injects, then fails."""

    config_class = _ConfigTouchingConfig

    @classmethod
    def inject(cls, model, config, adapter_name):
        model.config.touched_by_tuner = True
        model.config.num_hidden_layers = 99
        super().inject(model, config, adapter_name)


def test_prepare_model_rolls_back_every_adapter_of_the_call():
    model, inputs = models.llama()
    before, y = _fingerprint(model), out(model, inputs)
    configs = {"a": LoRAConfig(target_modules=["q_proj"], init_lora_weights=False),
               "b": _ConfigTouchingConfig(target_modules=["k_proj", "v_proj"])}
    with pytest.raises(RuntimeError, match="half way"):
        Swift.prepare_model(model, configs)
    _assert_same(before, _fingerprint(model))  # "a" is gone too, the base is trainable again, config as before
    assert not hasattr(model.config, "touched_by_tuner")
    torch.testing.assert_close(out(model, inputs), y)


def test_prepare_model_on_a_swift_model_rolls_back_too():
    sm, inputs = lora_mlp()
    before, y = _fingerprint(sm.base_model), out(sm, inputs)
    with pytest.raises(RuntimeError, match="half way"):
        Swift.prepare_model(sm, {"a": LoRAConfig(target_modules=["head"]), "b": _FlakyConfig(target_modules=["fc1", "fc2"])})
    assert list(sm.adapters) == ["default"] and sm.active_adapters == ["default"]
    _assert_same(before, _fingerprint(sm.base_model))
    torch.testing.assert_close(out(sm, inputs), y)
    Swift.prepare_model(sm, {"a": LoRAConfig(target_modules=["head"])})  # the name is free again
    assert list(sm.adapters) == ["default", "a"]


def test_invalid_config_is_refused_before_the_base_is_frozen():
    model, _ = models.mlp()
    with pytest.raises(ValueError):
        Swift.prepare_model(model, {"a": LoRAConfig(target_modules=["fc1"]), "b": LoRAConfig(target_modules=["nope"])})
    assert all(p.requires_grad for p in model.parameters()) and not list(tuner_layers(model))


def test_failed_from_pretrained_restores_requires_grad(tmp_path):
    sm, _ = lora_mlp(r=4)
    sm.save_pretrained(tmp_path)
    import json

    path = tmp_path / "default" / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "r": 2}))
    fresh, _ = models.mlp()
    before = _fingerprint(fresh)
    with pytest.raises(ValueError, match="shape"):
        Swift.from_pretrained(fresh, str(tmp_path))
    _assert_same(before, _fingerprint(fresh))


def test_adding_an_existing_name_through_base_model_is_refused():
    sm, inputs = lora_mlp()
    before, y = _fingerprint(sm.base_model), out(sm, inputs)
    with pytest.raises(ValueError, match="'default' already exists in this model's tuner layers"):
        Swift.prepare_model(sm.base_model, LoRAConfig(target_modules=["fc1"]))
    _assert_same(before, _fingerprint(sm.base_model))  # not re-initialised, not frozen
    torch.testing.assert_close(out(sm, inputs), y)


def test_failed_weighted_adapter_adds_nothing():
    model, inputs = lora_mlp()
    Swift.prepare_model(model, {"b": LoRAConfig(target_modules=["fc1", "fc2"], init_lora_weights=False)})
    with torch.no_grad():
        model.base_model.fc1.lora_A["b"].weight[0, 0] = float("nan")
    before = _fingerprint(model.base_model)
    for combination_type in ("svd", "linear"):  # svd raises inside torch; linear would yield NaN weights
        with pytest.raises((RuntimeError, ValueError), match="non-finite|NaN"):
            model.add_weighted_adapter(["default", "b"], [0.5, 0.5], "mix", combination_type=combination_type)
        assert list(model.adapters) == ["default", "b"]
        assert all("mix" not in layer.adapter_names for _, layer in tuner_layers(model.base_model))
        _assert_same(before, _fingerprint(model.base_model))


def test_meta_offload_temp_file_save_and_merge(tmp_path):
    model, inputs, y = _two_adapter_model()
    expected = {k: v.clone() for k, v in model.state_dict(adapter_name="b").items()}
    model.set_active_adapters("default", offload="meta")
    path = model._offloaded["b"]
    assert os.path.exists(path)
    saved = model.state_dict(adapter_name="b")  # read back transparently
    assert saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved)
    model.save_pretrained(tmp_path)
    loaded = Swift.from_pretrained(models.mlp()[0], str(tmp_path), adapter_name="b")
    torch.testing.assert_close(out(loaded, inputs), y["b"])
    with pytest.raises(ValueError, match=r"activate_adapter\('b'\)"):
        model.merge("b")
    model.delete_adapter("b")
    assert not os.path.exists(path)


def test_none_model_or_config_names_the_argument(tmp_path):
    with pytest.raises(TypeError, match="^model: expected a torch.nn.Module"):
        Swift.prepare_model(None, LoRAConfig(target_modules=["fc1"]))
    with pytest.raises(TypeError, match="^config: expected a SwiftConfig"):
        Swift.prepare_model(models.mlp()[0], None)
    lora_mlp()[0].save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="^model: expected a torch.nn.Module"):
        Swift.from_pretrained(None, str(tmp_path))
    with pytest.raises(TypeError, match="^model_id: expected"):
        Swift.from_pretrained(models.mlp()[0], None)


@pytest.mark.parametrize("name, error", [
    (5, TypeError), (None, TypeError), ("", ValueError), ("training", ValueError), ("forward", ValueError),
    ("to", ValueError), ("extra_states", ValueError), ("a/b", ValueError), ("a.b", ValueError), ("..", ValueError),
])
def test_bad_adapter_names_are_refused_with_one_clear_error(name, error):
    model, _ = models.mlp()
    with pytest.raises(error, match="adapter_name") as err:
        Swift.prepare_model(model, {name: LoRAConfig(target_modules=["fc1"])})
    assert "e.g." in str(err.value)  # says how to fix it
    assert all(p.requires_grad for p in model.parameters()) and not list(tuner_layers(model))


# ---- generic merge bookkeeping (TunerLayer.keep_pre_merge) ------------------------------------------
@dataclass
class _ShiftConfig(SwiftConfig):
    swift_type: str = field(default="_TEST_SHIFT")
    target_modules: object = None


class _ShiftLayer(TunerLayer):
    """y = (W + δ) x: merging adds δ; no `unmerge` written, keep_pre_merge undoes it."""

    adapter_attrs = ("delta",)
    mergeable = True
    keep_pre_merge = True

    def __init__(self, base_layer):
        super().__init__(base_layer)
        self.delta = nn.ParameterDict()

    def add_adapter(self, adapter_name, config):
        self.delta[adapter_name] = nn.Parameter(torch.zeros_like(self.base_layer.weight))

    def merge(self, adapter_name, safe_merge=True):
        merged = self.base_layer.weight.data + self.delta[adapter_name]
        if safe_merge and not torch.isfinite(merged).all():
            raise ValueError("safe_merge: NaN")
        self.base_layer.weight.data = merged

    def forward(self, x):
        weight = self.base_layer.weight + sum(self.delta[n] for n in self.active_adapters)
        return nn.functional.linear(x, weight, self.base_layer.bias)


@register_tuner
class _ShiftTuner(Tuner):
    config_class = _ShiftConfig
    layer_class = _ShiftLayer
    mergeable = True


def test_keep_pre_merge_undoes_any_merge_order_exactly():
    model, inputs = models.mlp()
    w0 = model.fc1.weight.detach().clone()
    sm = Swift.prepare_model(model, {n: _ShiftConfig(target_modules=["fc1"]) for n in ("a", "b", "c")})
    with torch.no_grad():
        for i, n in enumerate(("a", "b", "c")):
            sm.base_model.fc1.delta[n].normal_(generator=torch.Generator().manual_seed(i))
    y = out(sm, inputs)
    sm.merge()
    torch.testing.assert_close(out(sm, inputs), y)
    sm.unmerge("a")  # merged first: b and c are folded in again after restoring
    layer = sm.base_model.fc1
    assert layer.merged_adapters == ["b", "c"]
    torch.testing.assert_close(layer.base_layer.weight, w0 + layer.delta["b"] + layer.delta["c"])
    sm.unmerge()
    assert torch.equal(layer.base_layer.weight, w0)  # bit-exact, not w0 + δ - δ
    assert not layer.__dict__.get("_pre_merge")
    with torch.no_grad():
        layer.delta["c"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sm.merge()
    assert torch.equal(layer.base_layer.weight, w0) and layer.merged_adapters == []


def test_new_tuner_modules_follow_the_mode_of_the_module_they_wrap():
    """An eval-mode model stays deterministic after prepare_model (LoRA dropout off), a train-mode one trains."""
    model, inputs = models.llama()
    model.eval()
    tuned = Swift.prepare_model(model, LoRAConfig(r=4, target_modules=["q_proj"], lora_dropout=0.9))
    assert not any(m.training for m in tuned.modules())
    with torch.no_grad():
        torch.testing.assert_close(tuned(**inputs).logits, tuned(**inputs).logits)
    model, _ = models.llama()
    model.train()
    tuned = Swift.prepare_model(model, LoRAConfig(r=4, target_modules=["q_proj"], lora_dropout=0.9))
    assert all(m.training for m in tuned.base_model.modules())
