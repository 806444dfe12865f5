"""The conformance kit: one set of checks every tuner must pass.

    from swiftlite.testing import check_tuner, models
    report = check_tuner(lambda: LoRAConfig(target_modules=["fc1"]), models.mlp)

`config_factory()` returns a fresh config; `model_factory()` returns `(model, inputs)`, built
deterministically (it plays "the pretrained base"), with `model(**inputs)` the forward call.
Each check raises `AssertionError("<check>: what went wrong")`; the returned `Report` lists them.

Checks (in order):
  identity        output == base output right after injection (when the tuner promises it)
  perturbed       output changes once the tuner's weights are perturbed
  save_load       save -> load into a fresh base under another RNG seed gives identical outputs,
                  and the checkpoint holds tuner weights only
  disable         `disable_adapter()` gives the base output and restores the state on exit
  train           after optimizer steps only tuner parameters changed
  merge           merged == unmerged, unmerge restores, second merge is a no-op (mergeable tuners)
  two_adapters    two adapters are independent and switchable; none active == base
  delete          deleting every adapter restores the base and leaves no tuner layer
  invalid_config  each `_invalid_examples` field raises ValueError naming the field, changing nothing
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

from ..core import Swift, SwiftConfig, SwiftModel, get_tuner, tuner_layers

ModelFactory = Callable[[], tuple[nn.Module, dict[str, Any]]]
ConfigFactory = Callable[[], SwiftConfig]


@dataclass
class Report:
    tuner: str
    model: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"check_tuner({self.tuner} on {self.model})"]
        lines += [f"  ✓ {name}" for name in self.passed]
        lines += [f"  - {name}: skipped ({why})" for name, why in self.skipped.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<li style='color:green'>✓ {n}</li>" for n in self.passed)
        rows += "".join(f"<li style='color:gray'>– {n}: skipped ({w})</li>" for n, w in self.skipped.items())
        return f"<b>check_tuner({self.tuner} on {self.model})</b><ul>{rows}</ul>"


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


def _run(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return output_tensor(model(**inputs)).detach().clone()


def _assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, check: str, what: str) -> None:
    if a.shape != b.shape:
        raise AssertionError(f"{check}: {what}: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
    err = (a - b).abs().max().item()
    if not err <= atol:
        raise AssertionError(f"{check}: {what}: max abs difference {err:.3g} > atol {atol:g}")


def _assert_differs(a: torch.Tensor, b: torch.Tensor, check: str, what: str) -> None:
    if a.shape == b.shape and (a - b).abs().max().item() < 1e-6:
        raise AssertionError(f"{check}: {what}: outputs are identical but should differ")


def _perturb(model: SwiftModel, adapter_name: str, seed: int) -> None:
    """Move every weight of one adapter to a random nearby value (so zero-init parts become non-zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model._adapter_named_parameters(adapter_name):
            p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.3 + 0.05)


def check_tuner(
    config_factory: ConfigFactory,
    model_factory: ModelFactory,
    *,
    tmp_path: str | None = None,
    atol: float = 1e-5,
    identity: bool | None = None,
) -> Report:
    """Run every conformance check on one tuner config and one model; see module docstring."""
    config = config_factory()
    tuner = get_tuner(config.swift_type)
    report = Report(type(config).__name__, getattr(model_factory, "__name__", "model"))
    base, inputs = model_factory()
    y_base = _run(base, inputs)
    has_params = True

    # identity -----------------------------------------------------------------------------------
    model = Swift.prepare_model(model_factory()[0], config_factory())
    y_init = _run(model, inputs)
    if identity if identity is not None else tuner.identity_at_init:
        _assert_close(y_init, y_base, atol, "identity", "tuned model at init vs base")
        report.passed.append("identity")
    else:
        report.skipped["identity"] = "the method does not promise it"

    # perturbed ----------------------------------------------------------------------------------
    params = dict(model._adapter_named_parameters("default"))
    if params:
        _perturb(model, "default", seed=1)
        y_tuned = _run(model, inputs)
        _assert_differs(y_tuned, y_base, "perturbed", "perturbed tuner vs base")
        report.passed.append("perturbed")
    else:
        has_params = False
        y_tuned = y_init
        report.skipped["perturbed"] = "the tuner has no parameters"

    # save_load ----------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        model.save_pretrained(tmp)
        from safetensors.torch import load_file

        saved = load_file(os.path.join(tmp, "adapter_model.safetensors"))
        expected = set(model.state_dict(adapter_name="default"))
        if set(saved) != expected:
            extra = sorted(set(saved) - expected)[:3]
            raise AssertionError(f"save_load: checkpoint keys differ from the adapter's parameters (extra: {extra})")
        fresh, _ = model_factory()
        torch.manual_seed(12345)  # any random init inside the tuner now differs from the saved one
        loaded = Swift.from_pretrained(fresh, tmp)
        _assert_close(_run(loaded, inputs), y_tuned, atol, "save_load", "loaded vs saved model")
    report.passed.append("save_load")

    # disable ------------------------------------------------------------------------------------
    with model.disable_adapter():
        _assert_close(_run(model, inputs), y_base, atol, "disable", "inside disable_adapter() vs base")
    _assert_close(_run(model, inputs), y_tuned, atol, "disable", "after disable_adapter() vs before")
    report.passed.append("disable")

    # train --------------------------------------------------------------------------------------
    trained = Swift.prepare_model(model_factory()[0], config_factory())
    _perturb(trained, "default", seed=2)  # leave zero-init points where some gradients vanish
    tuner_names = set(trained.state_dict(adapter_name="default"))
    before = {n: p.detach().clone() for n, p in trained.base_model.named_parameters()}
    trainable = [n for n, p in trained.base_model.named_parameters() if p.requires_grad]
    if set(trainable) != tuner_names:
        raise AssertionError(f"train: trainable parameters {sorted(set(trainable) ^ tuner_names)[:4]} are not exactly the tuner's")
    if has_params:
        optimizer = torch.optim.Adam(trained.create_optimizer_param_groups(lr=1e-2), lr=1e-2)
        trained.train()
        for _ in range(3):
            out = output_tensor(trained(**inputs))
            loss = out.float().pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after = dict(trained.base_model.named_parameters())
        changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
        if not changed <= tuner_names:
            raise AssertionError(f"train: base parameters changed: {sorted(changed - tuner_names)[:4]}")
        if not changed:
            raise AssertionError("train: no tuner parameter changed after 3 optimizer steps")
        report.passed.append("train")
    else:
        report.skipped["train"] = "the tuner has no parameters"

    # merge --------------------------------------------------------------------------------------
    if tuner.mergeable:
        model.merge()
        _assert_close(_run(model, inputs), y_tuned, atol * 10, "merge", "merged vs unmerged")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.merge()
        if not any("already merged" in str(w.message) for w in caught):
            raise AssertionError("merge: a second merge should warn that it is a no-op")
        _assert_close(_run(model, inputs), y_tuned, atol * 10, "merge", "after a second merge")
        model.unmerge()
        _assert_close(_run(model, inputs), y_tuned, atol * 10, "merge", "after unmerge vs unmerged")
        with model.disable_adapter():
            _assert_close(_run(model, inputs), y_base, atol * 10, "merge", "base after unmerge")
        merged_model = copy.deepcopy(model).merge_and_unload()
        if any(True for _ in tuner_layers(merged_model)):
            raise AssertionError("merge: merge_and_unload left tuner layers behind")
        _assert_close(_run(merged_model, inputs), y_tuned, atol * 10, "merge", "merge_and_unload vs unmerged")
        report.passed.append("merge")
    else:
        report.skipped["merge"] = tuner.not_mergeable_reason or "not mergeable"

    # two_adapters -------------------------------------------------------------------------------
    Swift.prepare_model(model, {"second": config_factory()})
    if has_params:
        _perturb(model, "second", seed=3)
    model.set_active_adapters("default")
    _assert_close(_run(model, inputs), y_tuned, atol, "two_adapters", "only 'default' active vs before adding 'second'")
    model.set_active_adapters("second")
    y_second = _run(model, inputs)
    if has_params:
        _assert_differs(y_second, y_tuned, "two_adapters", "'second' vs 'default'")
    model.deactivate_adapter("second")
    _assert_close(_run(model, inputs), y_base, atol, "two_adapters", "no adapter active vs base")
    model.activate_adapter("second")
    _assert_close(_run(model, inputs), y_second, atol, "two_adapters", "'second' re-activated")
    report.passed.append("two_adapters")

    # delete -------------------------------------------------------------------------------------
    model.delete_adapter("second")
    model.activate_adapter("default")
    _assert_close(_run(model, inputs), y_tuned, atol, "delete", "'default' after deleting 'second'")
    model.delete_adapter("default")
    _assert_close(_run(model, inputs), y_base, atol, "delete", "after deleting every adapter vs base")
    left = [n for n, _ in tuner_layers(model.base_model)]
    if left:
        raise AssertionError(f"delete: tuner layers left behind: {left[:3]}")
    report.passed.append("delete")

    # invalid_config -----------------------------------------------------------------------------
    examples = getattr(type(config), "_invalid_examples", {})
    if not examples:
        raise AssertionError(f"invalid_config: {type(config).__name__} declares no _invalid_examples")
    for field_name, bad in examples.items():
        fresh, _ = model_factory()
        state = {k: v.clone() for k, v in fresh.state_dict().items()}
        try:
            Swift.prepare_model(fresh, dataclasses.replace(config_factory(), **{field_name: bad}))
        except ValueError as err:
            if field_name not in str(err):
                raise AssertionError(f"invalid_config: error for {field_name}={bad!r} does not name the field: {err}")
        else:
            raise AssertionError(f"invalid_config: {field_name}={bad!r} was accepted")
        if any(True for _ in tuner_layers(fresh)) or set(fresh.state_dict()) != set(state):
            raise AssertionError(f"invalid_config: {field_name}={bad!r} left the model modified")
    report.passed.append("invalid_config")
    return report
