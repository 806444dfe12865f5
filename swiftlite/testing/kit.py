"""The conformance kit: one set of checks every tuner must pass, one function per check.

    from swiftlite.testing import check_tuner, models
    report = check_tuner(lambda: LoRAConfig(target_modules=["fc1"]), models.mlp)

`config_factory()` returns a fresh config; `model_factory()` returns `(model, inputs)`, built
deterministically (it plays "the pretrained base"), with `model(**inputs)` the forward call.
A check takes a `Case`, raises `AssertionError("<check>: what went wrong")` when a promise is broken,
and returns None when it passed or a string saying why it does not apply. Every check builds its own
models, so one failure never hides another; `check_tuner` runs them all and raises one
AssertionError listing every failure (the first line names the first failed check).

CHECKS (in order):
  identity        output == base output right after injection (when the tuner promises it)
  perturbed       output changes once the tuner's weights are perturbed
  save_load       save -> load into a fresh base gives identical outputs; the checkpoint sits in
                  `<dir>/default/` and holds the adapter's weights only (its state dict, under the
                  tuner's `to_saved_state` key names)
  disable         `disable_adapter()` gives the base output and restores the state on exit
  train           exactly the tuner's parameters are trainable; after optimizer steps only they changed
  merge           merged == unmerged, unmerge restores, second merge is a no-op (mergeable tuners)
  two_adapters    two adapters are independent and switchable; none active == base
  delete          deleting every adapter restores the base and leaves no tuner layer
  invalid_config  each `_invalid_examples` field raises ValueError naming the field, changing nothing

The kit uses only public API (`SwiftModel.adapter_parameters`, `state_dict`, `tuner_layers`, ...)
and draws its random numbers from a local `torch.Generator`, never from the global RNG.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from ..api import Swift, SwiftModel
from ..core import SwiftConfig, Tuner, get_tuner, tuner_layers
from ..core.io import CONFIG_NAME, WEIGHTS_NAME

ModelFactory = Callable[[], tuple[nn.Module, dict[str, Any]]]
ConfigFactory = Callable[[], SwiftConfig]


@dataclass
class Case:
    """One tuner config on one model family: what every check receives."""

    config_factory: ConfigFactory
    model_factory: ModelFactory
    atol: float = 1e-5
    identity: bool | None = None  # override the tuner's `identity_at_init` promise
    tmp_path: str | None = None  # where checkpoints are written (a temporary folder inside it)

    def build(self) -> tuple[nn.Module, dict[str, Any]]:
        """`model_factory()`, with the caller's global RNG state restored afterwards (factories may
        seed it to build a deterministic base; the kit itself never draws from it)."""
        with torch.random.fork_rng(devices=[]):
            return self.model_factory()

    @property
    def tuner(self) -> type[Tuner]:
        return get_tuner(self.config_factory().swift_type)

    def base_output(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """(output of the untouched base model, inputs)."""
        base, inputs = self.build()
        return run(base, inputs), inputs

    def prepared(self, seed: int | None = 1) -> tuple[SwiftModel, dict[str, Any]]:
        """A fresh base with the adapter 'default'; its weights perturbed with `seed` (None: as initialised)."""
        base, inputs = self.build()
        model = Swift.prepare_model(base, self.config_factory())
        if seed is not None:
            perturb(model, "default", seed)
        return model, inputs

    def outputs(self) -> tuple[SwiftModel, dict[str, Any], torch.Tensor, torch.Tensor]:
        """(model with a perturbed 'default' adapter, inputs, base output, tuned output)."""
        y_base, _ = self.base_output()
        model, inputs = self.prepared(seed=1)
        return model, inputs, y_base, run(model, inputs)

    def has_parameters(self) -> bool:
        model, _ = self.prepared(seed=None)
        return bool(model.adapter_parameters("default"))


@dataclass
class Report:
    tuner: str
    model: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"check_tuner({self.tuner} on {self.model})"]
        lines += [f"  ✓ {name}" for name in self.passed]
        lines += [f"  - {name}: skipped ({why})" for name, why in self.skipped.items()]
        lines += [f"  ✗ {message}" for message in self.failed.values()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<li style='color:green'>✓ {n}</li>" for n in self.passed)
        rows += "".join(f"<li style='color:gray'>– {n}: skipped ({w})</li>" for n, w in self.skipped.items())
        rows += "".join(f"<li style='color:red'>✗ {m}</li>" for m in self.failed.values())
        return f"<b>check_tuner({self.tuner} on {self.model})</b><ul>{rows}</ul>"


# ---- helpers --------------------------------------------------------------------------------------
def output_tensor(output: Any) -> torch.Tensor:
    """The main tensor of a model output (tensor, HF ModelOutput, diffusers output or tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    for key in ("logits", "last_hidden_state", "sample"):
        value = getattr(output, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find the output tensor in {type(output).__name__}")


def run(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """The model's main output in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        return output_tensor(model(**inputs)).detach().clone()


def perturb(model: SwiftModel, adapter_name: str, seed: int) -> None:
    """Move every weight of one adapter to a random nearby value (so zero-init parts become non-zero).

    The noise comes from a local generator seeded with `seed`: the global RNG is left alone."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_parameters(adapter_name).values():
            p.add_(torch.randn(p.shape, generator=g).to(p.device, p.dtype) * 0.3 + 0.05)


def _assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, check: str, what: str) -> None:
    if a.shape != b.shape:
        raise AssertionError(f"{check}: {what}: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
    err = (a - b).abs().max().item()
    if not err <= atol:
        raise AssertionError(f"{check}: {what}: max abs difference {err:.3g} > atol {atol:g}")


def _assert_differs(a: torch.Tensor, b: torch.Tensor, check: str, what: str) -> None:
    if a.shape == b.shape and (a - b).abs().max().item() < 1e-6:
        raise AssertionError(f"{check}: {what}: outputs are identical but should differ")


NO_PARAMETERS = "the tuner has no parameters"


# ---- the checks -----------------------------------------------------------------------------------
def check_identity(case: Case) -> str | None:
    promised = case.identity if case.identity is not None else case.tuner.identity_at_init
    if not promised:
        return "the method does not promise it"
    y_base, inputs = case.base_output()
    model, _ = case.prepared(seed=None)
    _assert_close(run(model, inputs), y_base, case.atol, "identity", "tuned model at init vs base")
    return None


def check_perturbed(case: Case) -> str | None:
    if not case.has_parameters():
        return NO_PARAMETERS
    y_base, inputs = case.base_output()
    model, _ = case.prepared(seed=1)
    _assert_differs(run(model, inputs), y_base, "perturbed", "perturbed tuner vs base")
    return None


def check_save_load(case: Case) -> str | None:
    from safetensors.torch import load_file

    model, inputs = case.prepared(seed=1)
    y_tuned = run(model, inputs)
    config = model.adapters["default"]
    # a tuner without weights saves none (its model's state_dict() is then the base model's, as in ms-swift)
    state = model.state_dict(adapter_name="default") if model.adapter_parameters("default") else {}
    # the state dict under the checkpoint's key names (ms-swift's; differ only for LLaMA-Pro's new blocks)
    expected = set(get_tuner(config.swift_type).to_saved_state(model.base_model, config, state, "default"))
    with tempfile.TemporaryDirectory(dir=case.tmp_path) as tmp:
        model.save_pretrained(tmp)
        folder = os.path.join(tmp, "default")
        if not os.path.isfile(os.path.join(folder, CONFIG_NAME)):
            raise AssertionError(f"save_load: no {CONFIG_NAME} in <dir>/default/ (ms-swift's layout); "
                                 f"found {sorted(os.listdir(tmp))}")
        weights_file = os.path.join(folder, WEIGHTS_NAME)
        saved = set(load_file(weights_file)) if os.path.isfile(weights_file) else set()
        if saved != expected:
            raise AssertionError(f"save_load: checkpoint keys differ from the adapter's state_dict "
                                 f"(extra: {sorted(saved - expected)[:3]}, missing: {sorted(expected - saved)[:3]})")
        fresh, _ = case.build()
        loaded = Swift.from_pretrained(fresh, tmp)
        _assert_close(run(loaded, inputs), y_tuned, case.atol, "save_load", "loaded vs saved model")
    return None


def check_disable(case: Case) -> str | None:
    model, inputs, y_base, y_tuned = case.outputs()
    with model.disable_adapter():
        _assert_close(run(model, inputs), y_base, case.atol, "disable", "inside disable_adapter() vs base")
    _assert_close(run(model, inputs), y_tuned, case.atol, "disable", "after disable_adapter() vs before")
    return None


def check_train(case: Case) -> str | None:
    model, inputs = case.prepared(seed=2)  # away from zero-init points where some gradients vanish
    tuner_params = {id(p) for p in model.adapter_parameters("default").values()}
    trainable = [n for n, p in model.base_model.named_parameters() if p.requires_grad]
    if {id(p) for p in model.base_model.parameters() if p.requires_grad} != tuner_params:
        raise AssertionError(f"train: the trainable parameters ({trainable[:4]}...) are not exactly the tuner's")
    if not tuner_params:
        return NO_PARAMETERS
    before = {n: p.detach().clone() for n, p in model.base_model.named_parameters()}
    optimizer = torch.optim.Adam(model.create_optimizer_param_groups(lr=1e-2), lr=1e-2)
    model.train()
    for _ in range(3):
        loss = output_tensor(model(**inputs)).float().pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = dict(model.base_model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    base_changed = sorted(n for n in changed if id(after[n]) not in tuner_params)
    if base_changed:
        raise AssertionError(f"train: base parameters changed: {base_changed[:4]}")
    if not changed:
        raise AssertionError("train: no tuner parameter changed after 3 optimizer steps")
    return None


def check_merge(case: Case) -> str | None:
    tuner = case.tuner
    if not tuner.mergeable:
        return tuner.not_mergeable_reason or "not mergeable"
    atol = case.atol * 10
    model, inputs, y_base, y_tuned = case.outputs()
    model.merge()
    _assert_close(run(model, inputs), y_tuned, atol, "merge", "merged vs unmerged")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.merge()
    if not any("already merged" in str(w.message) for w in caught):
        raise AssertionError("merge: a second merge should warn that it is a no-op")
    _assert_close(run(model, inputs), y_tuned, atol, "merge", "after a second merge")
    model.unmerge()
    _assert_close(run(model, inputs), y_tuned, atol, "merge", "after unmerge vs unmerged")
    with model.disable_adapter():
        _assert_close(run(model, inputs), y_base, atol, "merge", "base after unmerge")
    unloaded = copy.deepcopy(model).merge_and_unload()
    if any(True for _ in tuner_layers(unloaded)):
        raise AssertionError("merge: merge_and_unload left tuner layers behind")
    _assert_close(run(unloaded, inputs), y_tuned, atol, "merge", "merge_and_unload vs unmerged")
    return None


def check_two_adapters(case: Case) -> str | None:
    model, inputs, y_base, y_default = case.outputs()
    Swift.prepare_model(model, {"second": case.config_factory()})
    has_params = bool(model.adapter_parameters("second"))
    if has_params:
        perturb(model, "second", seed=3)
    model.set_active_adapters("default")
    _assert_close(run(model, inputs), y_default, case.atol, "two_adapters", "only 'default' active vs before adding 'second'")
    model.set_active_adapters("second")
    y_second = run(model, inputs)
    if has_params:
        _assert_differs(y_second, y_default, "two_adapters", "'second' vs 'default'")
    model.deactivate_adapter("second")
    _assert_close(run(model, inputs), y_base, case.atol, "two_adapters", "no adapter active vs base")
    model.activate_adapter("second")
    _assert_close(run(model, inputs), y_second, case.atol, "two_adapters", "'second' re-activated")
    return None


def check_delete(case: Case) -> str | None:
    model, inputs, y_base, y_default = case.outputs()
    Swift.prepare_model(model, {"second": case.config_factory()})
    model.delete_adapter("second")
    _assert_close(run(model, inputs), y_default, case.atol, "delete", "'default' after deleting 'second'")
    model.delete_adapter("default")
    _assert_close(run(model, inputs), y_base, case.atol, "delete", "after deleting every adapter vs base")
    left = [n for n, _ in tuner_layers(model.base_model)]
    if left:
        raise AssertionError(f"delete: tuner layers left behind: {left[:3]}")
    return None


def check_invalid_config(case: Case) -> str | None:
    config = case.config_factory()
    examples = getattr(type(config), "_invalid_examples", {})
    if not examples:
        raise AssertionError(f"invalid_config: {type(config).__name__} declares no _invalid_examples")
    for field_name, bad in examples.items():
        fresh, _ = case.build()
        keys = set(fresh.state_dict())
        try:
            Swift.prepare_model(fresh, dataclasses.replace(case.config_factory(), **{field_name: bad}))
        except ValueError as err:
            if field_name not in str(err):
                raise AssertionError(f"invalid_config: error for {field_name}={bad!r} does not name the field: {err}")
        else:
            raise AssertionError(f"invalid_config: {field_name}={bad!r} was accepted")
        if any(True for _ in tuner_layers(fresh)) or set(fresh.state_dict()) != keys:
            raise AssertionError(f"invalid_config: {field_name}={bad!r} left the model modified")
    return None


CHECKS: dict[str, Callable[[Case], str | None]] = {
    "identity": check_identity,
    "perturbed": check_perturbed,
    "save_load": check_save_load,
    "disable": check_disable,
    "train": check_train,
    "merge": check_merge,
    "two_adapters": check_two_adapters,
    "delete": check_delete,
    "invalid_config": check_invalid_config,
}


def check_tuner(
    config_factory: ConfigFactory,
    model_factory: ModelFactory,
    *,
    tmp_path: str | None = None,
    atol: float = 1e-5,
    identity: bool | None = None,
    checks: list[str] | None = None,
) -> Report:
    """Run every check of `CHECKS` (or the named ones) on one tuner config and one model.

    Returns the report; raises one AssertionError listing every failed check (see module docstring)."""
    case = Case(config_factory, model_factory, atol=atol, identity=identity, tmp_path=tmp_path)
    unknown = sorted(set(checks or []) - set(CHECKS))
    if unknown:
        raise ValueError(f"checks: unknown {unknown}; choose from {list(CHECKS)}")
    report = Report(type(config_factory()).__name__, getattr(model_factory, "__name__", "model"))
    for name in checks or CHECKS:
        try:
            skipped = CHECKS[name](case)
        except AssertionError as err:
            report.failed[name] = str(err)
            continue
        if skipped is None:
            report.passed.append(name)
        else:
            report.skipped[name] = skipped
    if report.failed:
        raise AssertionError("\n".join(report.failed.values()))
    return report
