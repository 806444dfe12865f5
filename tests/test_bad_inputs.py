"""Bad inputs, generated: every one raises a clear error that names the field (or file), and
changes nothing — not the model's module tree, parameters, requires_grad flags or outputs, and not
any checkpoint on disk.

The config cases are generated from `swiftlite.core.TUNERS` and each config field's type hint, so
a new tuner (or a new field) is covered with no edit here. What a hint allows is derived below
(`_allowed_kinds`, `_range_of`) independently of the checker in core/config.py; hypothesis draws the
bad values (deterministically: `derandomize=True`).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import shutil
import types
import typing
from typing import Annotated, Any, Callable, Union

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import swiftlite.tuners  # noqa: F401  (registers every tuner)
from swiftlite import Swift
from swiftlite.core import TUNERS, Tuner, register_tuner
from swiftlite.core.config import MAX_SIZE, ConfigError, PositiveInt, Range, SwiftConfig, Target, field_hints
from swiftlite.core.io import CheckpointError
from swiftlite.testing import models
from swiftlite.testing.kit import output_tensor
from tests.test_conformance import CASES

T = swiftlite.tuners
SETTINGS = settings(derandomize=True, max_examples=6, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FAMILY_ORDER = ["mlp", "llama", "bert", "gpt2", "vit", "cnn", "unet"]  # cheapest first
NoneType = type(None)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run ~100x faster on one thread when other processes share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- what a type hint allows (derived here, not by the code under test) --------------------------
def _allowed_kinds(hint: Any) -> set[type]:
    """Python types a value of `hint` may have; `object` for Any. An int passes for a float."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {object}
    if origin is Annotated:
        return _allowed_kinds(args[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_allowed_kinds(a) for a in args))
    if origin in (list, tuple) or hint in (list, tuple):
        return {list}
    if hint is float:
        return {float, int}
    return {origin or hint}


def _list_item_kinds(hint: Any) -> set[type]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _list_item_kinds(args[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_list_item_kinds(a) for a in args))
    if origin is list:
        return _allowed_kinds(args[0])
    return set()


def _range_of(hint: Any) -> Range | None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return next((m for m in args[1:] if isinstance(m, Range)), None)
    if origin in (Union, types.UnionType):
        return next((r for r in map(_range_of, args) if r is not None), None)
    return None


# A strategy per kind of value; a field gets every kind its hint does not allow.
WRONG_KIND = {
    str: st.text(max_size=6),
    float: st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not float(v).is_integer()),
    int: st.integers(-3, 3),
    bool: st.booleans(),
    NoneType: st.none(),
    dict: st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
    object: st.builds(object),
}


def _wrong_value_strategy(hint: Any):
    allowed = _allowed_kinds(hint)
    if object in allowed:
        return None
    kinds = [k for k in WRONG_KIND if k not in allowed and not (k is int and float in allowed)]
    strategies = [WRONG_KIND[k] for k in kinds]
    if list not in allowed:
        strategies.append(st.lists(st.text(max_size=3), min_size=1, max_size=2))
    else:  # a list whose items are of a kind the list does not take
        items = _list_item_kinds(hint)
        strategies.append(st.lists(st.integers(-2, 2), min_size=1, max_size=2) if int not in items
                          else st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=2))
    return st.one_of(strategies)


# ---- a valid config of every tuner, on the cheapest model family it supports ----------------------
def _tuner_types() -> list[str]:
    return sorted(t for t in TUNERS if not t.startswith("_"))


def _family_of(swift_type: str) -> str:
    cases = CASES.get(swift_type)
    assert cases, f"{swift_type}: add conformance cases to tests/test_conformance.py (this suite reuses them)"
    return next(f for f in FAMILY_ORDER if f in cases)


def valid_config(swift_type: str):
    return CASES[swift_type][_family_of(swift_type)]()


def model_of(swift_type: str):
    return getattr(models, _family_of(swift_type))()


def _fields(swift_type: str) -> list[str]:
    return [name for name in field_hints(TUNERS[swift_type].config_class) if name != "swift_type"]


FIELD_IDS = [(t, f) for t in _tuner_types() for f in _fields(t)]
TYPED_FIELDS = [(t, f) for t, f in FIELD_IDS if object not in _allowed_kinds(field_hints(TUNERS[t].config_class)[f])]
RANGED_FIELDS = [(t, f) for t, f in FIELD_IDS if _range_of(field_hints(TUNERS[t].config_class)[f]) is not None]
NOT_NONE_FIELDS = [(t, f) for t, f in TYPED_FIELDS if NoneType not in _allowed_kinds(field_hints(TUNERS[t].config_class)[f])]
INT_FIELDS = [(t, f) for t, f in TYPED_FIELDS
              if int in _allowed_kinds(field_hints(TUNERS[t].config_class)[f])
              and bool not in _allowed_kinds(field_hints(TUNERS[t].config_class)[f])]


def _ids(pairs):
    return [f"{t}.{f}" for t, f in pairs]


def _assert_field_error(err: BaseException, config_cls: type, field_name: str) -> None:
    # ConfigError is a ValueError (as ms-swift / PEFT raise) and a TypeError (for a wrong type)
    assert isinstance(err, ConfigError), f"expected a ConfigError, got {type(err).__name__}: {err}"
    assert isinstance(err, ValueError) and isinstance(err, TypeError)
    assert f"{config_cls.__name__}.{field_name}" in str(err), f"the error does not name the field: {err}"
    assert "got" in str(err) or "must" in str(err)


def _construct_and_assign(swift_type: str, field_name: str, bad: Any) -> None:
    """Building a config with `bad` raises naming the field; so does assigning it, leaving the old value."""
    config = valid_config(swift_type)
    cls = type(config)
    with pytest.raises(ValueError) as info:
        dataclasses.replace(config, **{field_name: bad})
    _assert_field_error(info.value, cls, field_name)
    before = getattr(config, field_name)
    with pytest.raises(ValueError) as info:
        setattr(config, field_name, bad)
    _assert_field_error(info.value, cls, field_name)
    assert getattr(config, field_name) == before


# ---- 1. config fields -------------------------------------------------------------------------
@pytest.mark.parametrize("swift_type", _tuner_types())
def test_every_field_has_a_real_type_hint(swift_type):
    hints = field_hints(TUNERS[swift_type].config_class)
    vague = [name for name, hint in hints.items() if hint is Any]
    assert not vague, f"{TUNERS[swift_type].config_class.__name__}: give these fields a real type hint: {vague}"


@pytest.mark.parametrize("swift_type", _tuner_types())
def test_the_reused_valid_config_is_valid(swift_type):
    config = valid_config(swift_type)
    model, _ = model_of(swift_type)
    assert TUNERS[swift_type].match(model, config)


@pytest.mark.parametrize(("swift_type", "field_name"), TYPED_FIELDS, ids=_ids(TYPED_FIELDS))
def test_wrong_type(swift_type, field_name):
    hint = field_hints(TUNERS[swift_type].config_class)[field_name]

    @SETTINGS
    @given(bad=_wrong_value_strategy(hint))
    def check(bad):
        _construct_and_assign(swift_type, field_name, bad)

    check()


@pytest.mark.parametrize(("swift_type", "field_name"), NOT_NONE_FIELDS, ids=_ids(NOT_NONE_FIELDS))
def test_none_is_refused(swift_type, field_name):
    _construct_and_assign(swift_type, field_name, None)


@pytest.mark.parametrize(("swift_type", "field_name"), INT_FIELDS, ids=_ids(INT_FIELDS))
def test_a_bool_is_not_an_int(swift_type, field_name):
    _construct_and_assign(swift_type, field_name, True)


def _integral(hint: Any) -> bool:
    kinds = _allowed_kinds(hint)
    return int in kinds and float not in kinds


def _outside(r: Range, integral: bool):
    """Numbers outside `r` (ints for an int range)."""
    if integral:
        below = st.integers(max_value=int(r.low) - 1, min_value=int(r.low) - 10**6)
        above = st.integers(min_value=int(r.high) + 1, max_value=int(r.high) + 10**15)
        return st.one_of(below, above)
    below = st.floats(max_value=r.low, exclude_max=not r.low_open, allow_nan=False, allow_infinity=False,
                      min_value=r.low - 1e6)
    parts = [below, st.just(math.nan), st.just(math.inf), st.just(-math.inf)]
    if not math.isinf(r.high):
        parts.append(st.floats(min_value=r.high, exclude_min=not r.high_open, allow_nan=False, allow_infinity=False,
                               max_value=r.high + 1e6))
    return st.one_of(parts)


@pytest.mark.parametrize(("swift_type", "field_name"), RANGED_FIELDS, ids=_ids(RANGED_FIELDS))
def test_out_of_range(swift_type, field_name):
    hint = field_hints(TUNERS[swift_type].config_class)[field_name]
    r = _range_of(hint)

    @SETTINGS
    @given(bad=_outside(r, _integral(hint)))
    def check(bad):
        _construct_and_assign(swift_type, field_name, bad)

    check()


@pytest.mark.parametrize(("swift_type", "field_name"), RANGED_FIELDS, ids=_ids(RANGED_FIELDS))
def test_absurd_sizes_and_zero(swift_type, field_name):
    """`r=10**12` and friends: refused at construction, long before anything is allocated."""
    r = _range_of(field_hints(TUNERS[swift_type].config_class)[field_name])
    bads = [v for v in (10**12, MAX_SIZE + 1, 0, -1, 1e300) if v not in r]
    assert bads
    for bad in bads:
        _construct_and_assign(swift_type, field_name, bad)


@pytest.mark.parametrize(("swift_type", "field_name"), RANGED_FIELDS, ids=_ids(RANGED_FIELDS))
def test_range_edges_are_accepted(swift_type, field_name):
    """The checker is not stricter than the hint: values at the edges pass the field check."""
    hint = field_hints(TUNERS[swift_type].config_class)[field_name]
    r = _range_of(hint)
    edges = [v for v in (r.low, r.high, (r.low + min(r.high, r.low + 2)) / 2) if v in r and math.isfinite(v)]
    if _integral(hint):
        edges = sorted({int(v) for v in edges if float(v).is_integer()})
    assert edges
    config = valid_config(swift_type)
    for value in edges:
        try:
            dataclasses.replace(config, **{field_name: value})
        except ValueError as err:  # another field's rule (e.g. num_groups must divide num_new_blocks) may apply
            assert r.text not in str(err), f"{field_name}={value!r} is inside {r} but was refused: {err}"


def test_message_examples():
    """The form every field error takes: `<Config>.<field>: must be <what>, got <value>`."""
    cases = [
        (lambda: T.LoRAConfig(target_modules=["fc1"], r=0), "LoRAConfig.r: must be a positive int"),
        (lambda: T.LoRAConfig(target_modules=["fc1"], r=10**12), "LoRAConfig.r: must be a positive int (at most 2**20"),
        (lambda: T.LoRAConfig(target_modules=["fc1"], r=True), "LoRAConfig.r: must be a positive int (at most 2**20 = 1048576), got True (bool)"),
        (lambda: T.LoRAConfig(target_modules=["fc1"], lora_alpha=None), "LoRAConfig.lora_alpha: must be a finite number, got None"),
        (lambda: T.LoRAConfig(target_modules=["fc1"], lora_dropout="0.1"), "LoRAConfig.lora_dropout: must be a number in [0, 1), got '0.1' (str)"),
        (lambda: T.PrefixConfig(target_modules=["x"], init_std=None), "PrefixConfig.init_std: must be a finite number >= 0, got None"),
        (lambda: T.LoRAConfig(target_modules=7), "LoRAConfig.target_modules: must be None, a regex string (matching the whole module name) or a list of module names, got 7 (int)"),
        (lambda: T.AdapterConfig(dim=0, target_modules=["x"]), "AdapterConfig.dim: must be a positive int (at most 2**20 = 1048576) or None, got 0"),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError) as info:
            make()
        assert str(info.value).startswith(message), str(info.value)


def test_a_users_tuner_gets_the_field_checks_for_free():
    """register_tuner: the checks come from the hints, with no code in the user's config."""
    from dataclasses import dataclass, field

    @dataclass
    class MyConfig(SwiftConfig):
        swift_type: str = field(default="_BAD_INPUTS_MINE")
        target_modules: Target = None
        size: PositiveInt = 4
        scale: float = 1.0

    class MyTuner(Tuner):
        config_class = MyConfig

    register_tuner(MyTuner)
    try:
        for bad, needle in [({"size": 0}, "MyConfig.size"), ({"size": True}, "MyConfig.size"),
                            ({"scale": "1"}, "MyConfig.scale"), ({"target_modules": 3}, "MyConfig.target_modules")]:
            with pytest.raises(ConfigError, match=needle):
                MyConfig(**bad)
        assert MyConfig(size=MAX_SIZE, scale=2).size == MAX_SIZE
    finally:
        del TUNERS["_BAD_INPUTS_MINE"]


def test_an_unresolvable_type_hint_fails_at_registration():
    from dataclasses import dataclass, field

    @dataclass
    class Broken(SwiftConfig):
        swift_type: str = field(default="_BAD_INPUTS_BROKEN")
        size: "NoSuchType" = 4  # noqa: F821

    class BrokenTuner(Tuner):
        config_class = Broken

    with pytest.raises(TypeError, match="Broken: cannot resolve the type hints"):
        register_tuner(BrokenTuner)
    assert "_BAD_INPUTS_BROKEN" not in TUNERS


# ---- model snapshots: nothing may change after a refused call --------------------------------------
def snapshot(model: nn.Module, inputs: dict[str, Any] | None) -> dict[str, Any]:
    state = {
        "tree": repr(model),
        "modules": [(name, id(m), type(m).__name__) for name, m in model.named_modules()],
        "params": {n: (str(p.dtype), tuple(p.shape), p.detach().cpu().numpy().tobytes(), p.requires_grad)
                   for n, p in model.named_parameters()},
        "buffers": {n: b.detach().cpu().numpy().tobytes() for n, b in model.named_buffers()},
        "training": [m.training for m in model.modules()],
    }
    if inputs is not None:
        with torch.no_grad():
            state["output"] = output_tensor(model(**inputs)).detach().cpu().numpy().tobytes()
    return state


def assert_unchanged(model: nn.Module, inputs: dict[str, Any] | None, before: dict[str, Any]) -> None:
    after = snapshot(model, inputs)
    for key in before:
        assert after[key] == before[key], f"the refused call changed the model's {key}"


def refused(model: nn.Module, inputs, call: Callable[[], Any], error: type[BaseException], *needles: str,
            rng: bool = True):
    """Run `call`, expect `error` whose message contains every needle, and the model untouched. With
    `rng`, also the global RNG: a refusal found before any change draws no random numbers (a rollback
    after a failure inside injection, or in a load, may have drawn some)."""
    before = snapshot(model, inputs)
    rng_state = torch.random.get_rng_state()
    with pytest.raises(error) as info:
        call()
    for needle in needles:
        assert needle in str(info.value), f"{needle!r} not in the error: {info.value}"
    assert_unchanged(model, inputs, before)
    if rng:
        assert torch.equal(rng_state, torch.random.get_rng_state()), "the refused call used the global RNG"
    return info.value


# ---- 2. targets -------------------------------------------------------------------------------------
TARGETED = [t for t in _tuner_types() if "target_modules" in _fields(t)]


def _retarget(config, target):
    """`config` with another target (and no feedforward subset, which must lie inside the target)."""
    extra = {"feedforward_modules": None} if "feedforward_modules" in config.__dataclass_fields__ else {}
    return dataclasses.replace(config, target_modules=target, **extra)


@pytest.mark.parametrize("swift_type", TARGETED)
def test_a_list_entry_that_matches_nothing(swift_type):
    """`["q_prj", "v_proj"]`: the typo is named, with the nearest names, instead of being skipped."""
    model, inputs = model_of(swift_type)
    config = valid_config(swift_type)
    good = TUNERS[swift_type].match(model, config)[0].rsplit(".", 1)[-1]
    typo = good[:-1] + "x" + "_prj"
    if isinstance(config.target_modules, list):
        bad = dataclasses.replace(config, target_modules=config.target_modules + [typo])
    else:
        bad = _retarget(config, [good, typo])
    err = refused(model, inputs, lambda: Swift.prepare_model(model, bad), ValueError, typo, "target_modules")
    assert "Closest module names" in str(err)


@pytest.mark.parametrize("swift_type", TARGETED)
def test_a_regex_that_matches_the_whole_model(swift_type):
    """`'.*'` also matches the root (the empty name): refused, for Part too."""
    model, inputs = model_of(swift_type)
    bad = _retarget(valid_config(swift_type), ".*")
    refused(model, inputs, lambda: Swift.prepare_model(model, bad), ValueError, "target_modules", "the model itself")


@pytest.mark.parametrize("swift_type", TARGETED)
def test_a_target_that_matches_nothing(swift_type):
    model, inputs = model_of(swift_type)
    for target in (["no_such_layer"], r"no\.such\.layer", []):
        bad = _retarget(valid_config(swift_type), target)
        refused(model, inputs, lambda: Swift.prepare_model(model, bad), ValueError, "target_modules")


@pytest.mark.parametrize("swift_type", TARGETED)
def test_an_int_or_bad_regex_target(swift_type):
    for bad in (7, ["fc1", 3], r"(unclosed"):
        with pytest.raises(ValueError, match="target_modules"):
            config = _retarget(valid_config(swift_type), bad)
            Swift.prepare_model(model_of(swift_type)[0], config)


def _typed_tuners() -> list[str]:
    return [t for t in _tuner_types() if TUNERS[t].supported_types() is not None and "target_modules" in _fields(t)]


@pytest.mark.parametrize("swift_type", _typed_tuners())
def test_a_regex_that_also_matches_unsupported_modules(swift_type):
    """PEFT raises when a target selects a layer it cannot attach to; so do we, naming those layers."""
    model, inputs = model_of(swift_type)
    supported = TUNERS[swift_type].supported_types()
    ok = [n for n, m in model.named_modules() if n and isinstance(m, supported)]
    unsupported = [n for n, m in model.named_modules()
                   if n and not isinstance(m, supported) and not list(m.children())]
    assert ok and unsupported
    target = f"{ok[0]}|{unsupported[0]}".replace(".", r"\.")
    bad = _retarget(valid_config(swift_type), target)
    refused(model, inputs, lambda: Swift.prepare_model(model, bad), ValueError, unsupported[0], "cannot attach")


def test_part_refuses_the_root_and_everything():
    model, inputs = models.mlp()
    for target in (".*", "", r"(.*)?", ".+", r"[a-z].*", r"embed|fc1|norm|fc2|head"):
        refused(model, inputs, lambda: Swift.prepare_model(model, T.PartConfig(target_modules=target)),
                ValueError, "PartConfig.target_modules", "whole model")
    model, inputs = models.llama()
    refused(model, inputs, lambda: Swift.prepare_model(model, T.PartConfig(target_modules=".+")),
            ValueError, "PartConfig.target_modules", "whole model")
    assert Swift.prepare_model(model, T.PartConfig(target_modules=r"model\.layers\.1"))  # a part is fine


# ---- 3. shapes known only at the first forward before: now at prepare_model -------------------------
SHAPE_CASES = {
    "adapter-dim-linear": ("mlp", lambda: T.AdapterConfig(dim=12, target_modules=["fc1"], adapter_length=4),
                           ["AdapterConfig.dim=12", "set dim=24"]),
    "adapter-dim-bert-layer": ("bert", lambda: T.AdapterConfig(dim=16, target_modules=r".*layer\.\d+", adapter_length=4),
                               ["AdapterConfig.dim=16", "set dim=32"]),
    "adapter-dim-llama-mlp": ("llama", lambda: T.AdapterConfig(dim=48, target_modules=r".*mlp", adapter_length=4),
                              ["AdapterConfig.dim=48", "set dim=32"]),
    "adapter-hidden-pos-none-item": ("llama", lambda: T.AdapterConfig(dim=32, target_modules=r".*self_attn", hidden_pos=1,
                                                                       adapter_length=4), ["AdapterConfig.hidden_pos=1", "NoneType"]),
    "adapter-hidden-pos-out-of-range": ("llama", lambda: T.AdapterConfig(dim=32, target_modules=r".*self_attn", hidden_pos=5,
                                                                          adapter_length=4), ["AdapterConfig.hidden_pos=5", "2 items"]),
    "adapter-hidden-pos-key-on-tuple": ("llama", lambda: T.AdapterConfig(dim=32, target_modules=r".*self_attn",
                                                                          hidden_pos="hidden", adapter_length=4),
                                        ["AdapterConfig.hidden_pos='hidden'", "int index"]),
    "adapter-hidden-pos-vit": ("vit", lambda: T.AdapterConfig(dim=32, target_modules=r".*layers\.\d+\.attention",
                                                              hidden_pos=3, adapter_length=4),
                               ["AdapterConfig.hidden_pos=3", "2 items"]),  # probe input built from ViTConfig
    "adapter-hidden-pos-unet": ("unet", lambda: T.AdapterConfig(dim=16, target_modules=r"down_blocks\.0\.attentions\.0",
                                                               hidden_pos=2, adapter_length=4),
                                ["AdapterConfig.hidden_pos=2"]),  # probe input built from the U-Net's config
    "adapter-method-missing": ("mlp", lambda: T.AdapterConfig(dim=24, target_modules=["fc1"], method_name="nope"),
                               ["AdapterConfig.method_name", "nope"]),
    "side-dim-linear": ("mlp", lambda: T.SideConfig(dim=7, target_modules=["fc2"], side_module_name="mlp"),
                        ["SideConfig.dim=7", "set dim=24"]),
    "side-dim-llama-layer": ("llama", lambda: T.SideConfig(dim=16, target_modules=r"model\.layers\.\d+", side_module_name="mlp"),
                             ["SideConfig.dim=16", "set dim=32"]),
    "side-in-dim": ("mlp", lambda: T.SideConfig(dim=24, target_modules=["fc2"], side_module_name="mlp", side_in_dim=5),
                    ["SideConfig.side_in_dim=5", "side_in_dim=24"]),
    "side-source-pos-index": ("mlp", lambda: T.SideConfig(dim=24, target_modules=["fc2"], source_hidden_pos=3),
                              ["SideConfig.source_hidden_pos=3"]),
    "side-source-pos-name": ("mlp", lambda: T.SideConfig(dim=24, target_modules=["fc2"], source_hidden_pos="x"),
                             ["SideConfig.source_hidden_pos='x'"]),
    "side-target-pos-none-item": ("llama", lambda: T.SideConfig(dim=32, target_modules=r".*self_attn", side_module_name="mlp",
                                                                 target_hidden_pos=1), ["SideConfig.target_hidden_pos=1", "NoneType"]),
    "prompt-dim-bert": ("bert", lambda: T.PromptConfig(dim=16, target_modules=r".*layer\.\d+", prompt_length=2),
                        ["PromptConfig.dim=16", "set dim=32"]),
    "prompt-dim-llama": ("llama", lambda: T.PromptConfig(dim=64, target_modules=r".*layers\.\d+", prompt_length=2),
                         ["PromptConfig.dim=64", "set dim=32"]),
    "prompt-dim-list-length": ("bert", lambda: T.PromptConfig(dim=[32], target_modules=r".*layer\.\d+"),
                               ["PromptConfig.dim", "1 dims for 2"]),
    "prompt-on-a-linear": ("bert", lambda: T.PromptConfig(dim=32, target_modules=["query"]),
                           ["PromptConfig.target_modules", "Linear", "single layer"]),
    "prompt-mask-pos-no-argument": ("bert", lambda: T.PromptConfig(dim=32, target_modules=r".*layer\.\d+", attention_mask_pos="mask"),
                                    ["PromptConfig.attention_mask_pos='mask'", "names no argument"]),
    "prompt-embedding-pos-index": ("llama", lambda: T.PromptConfig(dim=32, target_modules=r".*layers\.\d+", embedding_pos=9),
                                   ["PromptConfig.embedding_pos=9", "position 9"]),
    "prefix-on-a-linear": ("llama", lambda: T.PrefixConfig(target_modules=r".*q_proj"), ["PrefixConfig.target_modules"]),
    "llamapro-zero-modules": ("llama", lambda: T.LLaMAProConfig(num_new_blocks=2, zero_modules=["nope"]),
                              ["LLaMAProConfig.", "zero_modules", "['nope']"]),
    "lora-conv-family-unsupported": ("cnn", lambda: T.LoRAConfig(target_modules=["norm"]), ["LoRAConfig.target_modules", "GroupNorm"]),
}


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shape_mismatch_found_at_prepare_time(case):
    family, make_config, needles = SHAPE_CASES[case]
    model, inputs = getattr(models, family)()
    config = make_config()
    refused(model, inputs, lambda: Swift.prepare_model(model, config), ValueError, *needles)


def test_the_dry_probe_changes_nothing_in_train_mode():
    """hidden_pos needs one dry forward; in train mode it must not flip flags, draw random numbers or
    leave hooks behind."""
    model, inputs = models.bert()  # dropout 0.1: a train-mode forward draws random numbers
    model.train()
    config = T.AdapterConfig(dim=32, target_modules=r".*attention\.self", hidden_pos=1, adapter_length=4)
    before = snapshot(model, None)
    rng_state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match="AdapterConfig.hidden_pos=1"):
        Swift.prepare_model(model, config)
    assert torch.equal(rng_state, torch.random.get_rng_state())
    assert_unchanged(model, None, before)
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


# ---- 4. adapter names and rollback (api/model.py) -----------------------------------------------------
BAD_NAMES = ["a.b", "", "has space", "x/y", "1st", "extra_states", "to", 5, None, ("t",),
             "a" * 256]  # longer than a folder name can be (save_pretrained writes dir/<adapter_name>/)


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_bad_adapter_name(name):
    model, inputs = models.mlp()
    with pytest.raises((ValueError, TypeError)) as info:
        before = snapshot(model, inputs)
        Swift.prepare_model(model, {name: T.LoRAConfig(target_modules=["fc1"])})
    assert "adapter_name" in str(info.value)
    assert_unchanged(model, inputs, before)


def test_an_adapter_name_too_long_for_a_folder_names_the_limit():
    model, inputs = models.mlp()
    refused(model, inputs, lambda: Swift.prepare_model(model, {"a" * 256: T.LoRAConfig(target_modules=["fc1"])}),
            ValueError, "adapter_name", "256 bytes", "255", "shorter name")
    Swift.prepare_model(model, {"a" * 255: T.LoRAConfig(target_modules=["fc1"])})  # the longest a folder holds


def test_adapter_method_name_naming_a_submodule():
    """BertLayer.intermediate is a submodule, not a method: the error names method_name and the fix."""
    model, inputs = models.bert()
    config = T.AdapterConfig(dim=32, target_modules=r".*layer\.\d+", method_name="intermediate")
    refused(model, inputs, lambda: Swift.prepare_model(model, config), ValueError,
            "AdapterConfig.method_name='intermediate'", "submodule, not a method", "target_modules")


def test_an_existing_adapter_name():
    model, inputs = models.mlp()
    swift = Swift.prepare_model(model, T.LoRAConfig(target_modules=["fc1"], init_lora_weights=False))
    refused(swift, inputs, lambda: Swift.prepare_model(swift, {"default": T.IA3Config(target_modules=["fc2"])}),
            ValueError, "adapter_name='default'", "already exists")


def test_config_none_and_model_none():
    model, inputs = models.mlp()
    refused(model, inputs, lambda: Swift.prepare_model(model, None), (TypeError, ValueError), "config")
    with pytest.raises((TypeError, ValueError), match="model"):
        Swift.prepare_model(None, T.LoRAConfig(target_modules=["fc1"]))


@pytest.mark.parametrize("swift_type", _tuner_types())
def test_injection_failing_midway_rolls_back(swift_type, monkeypatch):
    """The second layer's add_adapter raises: the first one's changes are undone too."""
    model, inputs = model_of(swift_type)
    config = valid_config(swift_type)
    layer_class = TUNERS[swift_type].layer_class
    if layer_class is None:  # no per-module layers (ResTuning: hooks + one child): covered in its own tests
        pytest.skip(f"{swift_type} injects no per-module layer_class")
    original = layer_class.add_adapter
    calls = []
    n_targets = len(TUNERS[swift_type].match(model, config))

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) >= min(2, n_targets):
            raise RuntimeError("injected failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(layer_class, "add_adapter", failing)
    refused(model, inputs, lambda: Swift.prepare_model(model, config), RuntimeError, "injected failure", rng=False)


def test_a_failing_second_adapter_leaves_the_first(monkeypatch):
    model, inputs = models.mlp()
    swift = Swift.prepare_model(model, T.LoRAConfig(target_modules=["fc1", "fc2"], init_lora_weights=False))
    refused(swift, inputs, lambda: Swift.prepare_model(swift, {"second": T.LoRAConfig(target_modules=["fc1", "fc_2"])}),
            ValueError, "fc_2")
    refused(swift, inputs, lambda: Swift.prepare_model(swift, {"b": T.IA3Config(target_modules=["fc1"]),
                                                              "c": T.LoRAConfig(target_modules=["nope"])}),
            ValueError, "nope")
    assert list(swift.adapters) == ["default"]


# ---- 5. checkpoints (read side) ----------------------------------------------------------------------
def _tree_bytes(directory: str) -> dict[str, str]:
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "**"), recursive=True)):
        if os.path.isfile(path):
            out[os.path.relpath(path, directory)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> str:
    model, _ = models.mlp()
    swift = Swift.prepare_model(model, T.LoRAConfig(target_modules=["fc1", "fc2"], r=2, init_lora_weights=False))
    directory = str(tmp_path_factory.mktemp("ckpt") / "adapter")
    swift.save_pretrained(directory)
    return directory


@pytest.fixture
def ckpt(pristine, tmp_path) -> str:
    directory = str(tmp_path / "adapter")
    shutil.copytree(pristine, directory)
    return directory


def _file(directory: str, name: str) -> str:
    (path,) = glob.glob(os.path.join(directory, "**", name), recursive=True)
    return path


@pytest.fixture
def no_hub(monkeypatch):
    import huggingface_hub

    def fail(*args, **kwargs):
        raise AssertionError("the hub was called for a local path")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)


def load_refused(directory: str, error, *needles: str, onto: nn.Module | None = None, **kwargs):
    """from_pretrained(directory) is refused; the base (or SwiftModel) and the checkpoint are unchanged."""
    model, inputs = (onto, models.mlp()[1]) if onto is not None else models.mlp()
    files = _tree_bytes(directory) if os.path.isdir(directory) else None
    err = refused(model, inputs, lambda: Swift.from_pretrained(model, directory, **kwargs), error, *needles, rng=False)
    if files is not None:
        assert _tree_bytes(directory) == files, "the refused load changed the checkpoint on disk"
    return err


def _corrupt(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.mark.parametrize("folder", ["my adapter", "1st", "a.b"])
def test_a_checkpoint_sub_folder_whose_name_is_no_adapter_name(ckpt, folder):
    """Refused when it would load under its own name, naming the folder and the rename-on-load fix
    (nothing loaded); the valid adapters beside it still load by name."""
    shutil.copytree(os.path.join(ckpt, "default"), os.path.join(ckpt, folder))
    load_refused(ckpt, ValueError, f"sub-folder {folder}/", f"adapter_name={{{folder!r}: 'new_name'}}")
    loaded = Swift.from_pretrained(models.mlp()[0], ckpt, adapter_name="default")
    assert list(loaded.adapters) == ["default"]


def test_a_hidden_checkpoint_sub_folder_is_reported(ckpt):
    shutil.copytree(os.path.join(ckpt, "default"), os.path.join(ckpt, ".old"))
    with pytest.warns(UserWarning, match=r"skipping the hidden folder \.old/"):
        loaded = Swift.from_pretrained(models.mlp()[0], ckpt)
    assert list(loaded.adapters) == ["default"]


@pytest.mark.parametrize("path", ["", "  "])
def test_save_pretrained_to_an_empty_path(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    model, inputs = models.mlp()
    swift = Swift.prepare_model(model, T.LoRAConfig(target_modules=["fc1"]))
    refused(swift, inputs, lambda: swift.save_pretrained(path), ValueError, "save_directory", "empty",
            "save_pretrained('out/lora')")
    assert os.listdir(tmp_path) == []  # nothing written into the working directory


@pytest.mark.parametrize("how", ["zero-byte", "random", "truncated-header", "truncated-data", "text"])
def test_damaged_safetensors(ckpt, how):
    path = _file(ckpt, "adapter_model.safetensors")
    data = open(path, "rb").read()
    damaged = {"zero-byte": b"", "random": bytes(range(256)) * 3, "truncated-header": data[:20],
               "truncated-data": data[:-1], "text": b"not a safetensors file"}[how]
    _corrupt(path, damaged)
    load_refused(ckpt, CheckpointError, path, "safetensors")


def test_any_truncation_of_the_weights_is_refused(pristine, tmp_path):
    data = open(_file(pristine, "adapter_model.safetensors"), "rb").read()

    @SETTINGS
    @given(cut=st.integers(0, len(data) - 1))
    def check(cut):
        directory = str(tmp_path / f"cut{cut}")
        shutil.copytree(pristine, directory)
        path = _file(directory, "adapter_model.safetensors")
        _corrupt(path, data[:cut])
        load_refused(directory, CheckpointError, path)
        shutil.rmtree(directory)

    check()


def test_random_bytes_as_weights(pristine, tmp_path):
    @SETTINGS
    @given(blob=st.binary(max_size=96))
    def check(blob):
        directory = str(tmp_path / "random")
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(pristine, directory)
        path = _file(directory, "adapter_model.safetensors")
        _corrupt(path, blob)
        load_refused(directory, CheckpointError, path)

    check()


CONFIG_DAMAGE = {
    "invalid-json": (b"{not json", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "a-list": (b"[1, 2]", "JSON object"),
    "a-string": (b'"LORA"', "JSON object"),
    "unknown-swift-type": (json.dumps({"swift_type": "NOPE", "r": 2}).encode(), "swift_type='NOPE'"),
    "unknown-peft-type": (json.dumps({"peft_type": "NOPE", "r": 2}).encode(), "peft_type='NOPE'"),
    "no-type": (json.dumps({"r": 2}).encode(), "neither 'swift_type' nor 'peft_type'"),
    "not-utf8": (b"\xff\xfe\x00{", "not valid JSON"),
}


@pytest.mark.parametrize("how", sorted(CONFIG_DAMAGE))
def test_damaged_adapter_config(ckpt, how):
    path = _file(ckpt, "adapter_config.json")
    data, needle = CONFIG_DAMAGE[how]
    _corrupt(path, data)
    load_refused(ckpt, CheckpointError, path, needle)


@pytest.mark.parametrize(("field_name", "value"), [("r", 0), ("r", 10**12), ("lora_alpha", None), ("lora_dropout", "0.1"),
                                                   ("target_modules", 7), ("r", True)])
def test_a_saved_config_with_a_bad_field(ckpt, field_name, value):
    path = _file(ckpt, "adapter_config.json")
    raw = json.load(open(path))
    raw[field_name] = value
    _corrupt(path, json.dumps(raw).encode())
    load_refused(ckpt, CheckpointError, path, f"LoRAConfig.{field_name}")


def test_weights_of_another_shape(ckpt):
    path = _file(ckpt, "adapter_config.json")
    raw = json.load(open(path))
    raw["r"] = 3
    _corrupt(path, json.dumps(raw).encode())
    load_refused(ckpt, ValueError, "shape")


def test_missing_weights_file(ckpt):
    os.remove(_file(ckpt, "adapter_model.safetensors"))
    load_refused(ckpt, (CheckpointError, FileNotFoundError), "adapter_model")


def test_missing_absolute_directory(tmp_path, no_hub):
    load_refused(str(tmp_path / "nope"), FileNotFoundError, "no such directory")


@pytest.mark.parametrize("relative", ["nope", "./nope", "sub/nope", "sub/nope/deeper", "../nope"])
def test_missing_relative_directory(tmp_path, monkeypatch, no_hub, relative):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    load_refused(relative, FileNotFoundError, "no such directory", relative)


def test_a_file_instead_of_a_directory(ckpt, no_hub):
    path = _file(ckpt, "adapter_config.json")
    load_refused(path, CheckpointError, path, "is a file")


def test_a_directory_without_adapters(tmp_path, no_hub):
    load_refused(str(tmp_path), FileNotFoundError, str(tmp_path))


def test_a_failed_load_leaves_an_existing_swift_model(ckpt):
    model, inputs = models.mlp()
    swift = Swift.prepare_model(model, {"mine": T.IA3Config(target_modules=["fc1"], init_ia3_weights=False)})
    path = _file(ckpt, "adapter_model.safetensors")
    _corrupt(path, b"\0" * 10)
    load_refused(ckpt, CheckpointError, path, onto=swift)
    assert list(swift.adapters) == ["mine"]


# ---- pickle checkpoints: torch's restricted unpickler, never code from the file -------------------------
class _Malicious:
    """Unpickling this calls os.mkdir(marker): proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _to_pickle(ckpt: str, extra: dict | None = None) -> str:
    from safetensors.torch import load_file

    path = _file(ckpt, "adapter_model.safetensors")
    weights = load_file(path)
    os.remove(path)
    target = os.path.join(os.path.dirname(path), "adapter_model.bin")
    torch.save({**weights, **(extra or {})}, target)
    return target


def test_a_pickle_checkpoint_loads_through_the_restricted_unpickler(ckpt, pristine):
    _to_pickle(ckpt)
    base, inputs = models.mlp()
    loaded = Swift.from_pretrained(base, ckpt)
    reference = Swift.from_pretrained(models.mlp()[0], pristine)
    with torch.no_grad():
        assert torch.equal(output_tensor(loaded(**inputs)), output_tensor(reference(**inputs)))


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_a_malicious_pickle_runs_no_code(ckpt, tmp_path, allow_pickle):
    marker = str(tmp_path / "code_ran")
    path = _to_pickle(ckpt, {"payload": _Malicious(marker)})
    if allow_pickle:  # the user vouched for the file: full pickle, as documented (here: it runs)
        model, _ = models.mlp()
        with pytest.raises(Exception):
            Swift.from_pretrained(model, ckpt, allow_pickle=True)
        assert os.path.isdir(marker), "allow_pickle=True is full pickle"
        return
    err = load_refused(ckpt, CheckpointError, path, "allow_pickle=True", "mkdir")
    assert not os.path.exists(marker), "code from the pickle ran"
    assert "ran none of it" in str(err)


@pytest.mark.parametrize("how", ["zero-byte", "random", "truncated"])
def test_damaged_pickle(ckpt, how):
    path = _to_pickle(ckpt)
    data = open(path, "rb").read()
    _corrupt(path, {"zero-byte": b"", "random": bytes(range(256)), "truncated": data[: len(data) // 2]}[how])
    load_refused(ckpt, CheckpointError, path)


def test_a_pickle_that_is_not_a_state_dict(ckpt):
    path = _to_pickle(ckpt)
    torch.save([torch.zeros(2)], path)
    load_refused(ckpt, CheckpointError, path, "state dict")
