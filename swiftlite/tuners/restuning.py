"""Res-Tuning: A Flexible and Efficient Tuning Paradigm via Unbinding Tuner from Backbone
(Jiang et al., NeurIPS 2023, arXiv:2310.19859) — the memory-efficient Res-Tuning-Bypass, as in ms-swift.

Probes read features of the frozen backbone (x_0 at a root module, s_1..s_N at N stem modules) and
detach them; a side network of N blocks runs beside the backbone::

    x_i = aux_i( lateral_i(s_i) + vertical_i(x_{i-1}) ),      i = 1..N

lateral / vertical are Res-Adapters `T(h) = h + W_2 · GELU(W_1 · h)` (or group adapters, identity, zero;
see `restuning_components.py`), aux an optional upsampler between U-Net stages. x_N replaces the
input of the target module (or its output, `target_modules_hook="output"`): e.g. a ViT's final
LayerNorm gets x_N instead of the last block's output. Because the probes are detached, gradients
never enter the backbone: no backbone activation is kept for the backward pass, and several tasks can
share one backbone forward.

Where things attach (ms-swift's rules): `root_modules` is a regex, the first module it matches gives
x_0 (its input, `root_modules_hook="input"`, or its output); without a root, x_0 is the input of the
first stem. `stem_modules` is a regex (modules in model order) or a list of exact names (in list
order); each gives s_i (its output by default). `target_modules` must select exactly one module.
`target_hidden_pos` says which positional argument (int) or keyword (str) of the target is replaced,
or which element of its output.

Structure and checkpoints as in ms-swift: adapter `<name>` is the child `restuning_<name>` of the
model itself (the module given to `prepare_model`), so its keys are
`restuning_<name>.bypass_blocks.<i>.{lateral,vertical,aux}_tuner.tuner.ln1.weight` etc.

Differences from ms-swift / the paper:
- `tuner_cfg=None` (the default) means "res_adapter" (the paper's Res-Adapter); ms-swift crashes on it.
  `root_modules=None` uses the first stem's input as x_0; ms-swift crashes on it too.
- `use_bypass=False` runs the same side network on features that are NOT detached, so gradients flow
  back into the backbone (ms-swift ignores the field). This costs memory only when something before the
  probes trains (unfrozen layers, a tuner inside the backbone): a frozen backbone's features carry no
  autograd graph either way. The paper's memory comparison is against Res-Tuning with the tuners inside
  the backbone, `UTuningConfig` (tests/test_bypass.py checks both facts on the autograd graph).
- Probe and target hooks are removed by `delete_adapter`; each adapter keeps its own features (and each
  thread its own), so several ResTuning adapters, and threads running one model, do not mix them up;
  a deactivated adapter neither probes nor replaces.
- Each feature is used once: a target that runs before its stems (or twice per forward) raises
  instead of silently reading the previous forward's features.
- A top-level dict `tuner_cfg` ignores `use_upsample` in ms-swift; here that combination is an error.
- A model that is an `nn.Sequential` is refused (the child `restuning_<name>` would run as a layer).
- Several active ResTuning adapters on one target each replace the same input: the one added last wins
  (ms-swift chains them and mixes up their stems). Give each task its own target, or switch adapters.
- The paper also puts Res-Tuners inside the backbone (Res-Tuning without bypass, `x' = OP(x) + T(x)`):
  that is `UTuningConfig` (utuning.py). This file is the bypass only.

Multi-task inference (`multi_task_forward(model, ["task_a", "task_b"], **inputs)`): one backbone forward
feeds every listed adapter's bypass; what follows the target runs once on the K bypass outputs stacked
along the batch axis.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, register_tuner
from ..core.config import Index, PositiveInt, Target
from ..core.layer import HookedAdapter, canonical_name
from ..core.modules import apply_to_hidden, hidden_of
from ..core.params import rename_attached
from ..core.targeting import match_modules, name_matches
from .restuning_components import ResTunerBypassBlock, block_cfgs

Hook = Literal["input", "output"]


@dataclass
class ResTuningConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `ResTuningConfig`."""

    swift_type: str = field(default="RESTUNING")
    dims: Union[PositiveInt, list[PositiveInt], None] = None  # width of each stem feature (one int, or one per stem)
    root_modules: str | None = None  # regex; the first match gives x_0 (None: the first stem's input)
    root_modules_hook: Hook = "input"  # x_0 is the root's input or its output
    stem_modules: Target = None  # regex (model order) or list of exact names (list order): s_1..s_N
    stem_modules_hook: Hook = "output"  # s_i is the stem's output (or its input)
    target_modules: Target = None  # the one module whose input (or output) x_N replaces
    target_modules_hook: Hook = "input"
    target_hidden_pos: Index | str | None = None  # which argument / output element; None: 0 (as ms-swift)
    tuner_cfg: Union[str, dict, list[Union[str, dict, None]], None] = None  # "res_adapter", "res_group_adapter", {lateral_cfg, ...}, or one per stem
    use_upsample: bool = False  # string tuner_cfg: an "upsample" aux tuner after every block but the last (U-Nets)
    upsample_out_channels: Union[PositiveInt, list[Union[PositiveInt, None]], None] = None  # aux conv widths (None: no conv)
    zero_init_last: bool = False  # the last block's W_2 starts at 0
    use_bypass: bool = True  # True: probes are detached (no gradient into the backbone); False: they are not

    _invalid_examples: ClassVar[dict] = {"dims": None, "stem_modules": None, "target_modules": None,
                                         "tuner_cfg": "adapter", "root_modules_hook": "inputs"}

    def __post_init__(self) -> None:
        if self.target_hidden_pos is None:
            self.target_hidden_pos = 0  # ms-swift's rule
        super().__post_init__()

    def validate(self) -> None:
        self._require(self.dims is not None, "dims", "is required: the width of the stem features, e.g. 768 for "
                      "ViT-B, or one width per stem, e.g. [320, 640, 1280] for a U-Net")
        self._require(self.stem_modules is not None, "stem_modules",
                      "is required: the backbone modules whose features feed the bypass, e.g. r'vit\\.layers\\.\\d+'")
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the one module that receives the bypass output, e.g. 'vit.layernorm'")
        self._require(self.target_hidden_pos is not None, "target_hidden_pos", "must be an int index or a str key")
        if isinstance(self.tuner_cfg, dict) and self.use_upsample and "aux_cfg" not in self.tuner_cfg:
            self._require(False, "use_upsample", "has no effect with a dict tuner_cfg (it only adds aux tuners to "
                          "a string tuner_cfg); add 'aux_cfg': 'upsample' to tuner_cfg instead")
        items = self.tuner_cfg if isinstance(self.tuner_cfg, list) else [self.tuner_cfg]
        problem = None
        for item in items:
            try:
                block_cfgs(item, self.use_upsample, last_block=False)
            except ValueError as err:
                problem = problem or str(err)
        self._require(problem is None, "tuner_cfg", str(problem))


class _Probe:
    """Forward (pre-)hook that stores one feature of a bypass: detached, unless use_bypass=False."""

    def __init__(self, bypass: "ResTuningBypassModule", slot: int, side: str) -> None:
        self.bypass, self.slot, self.side = bypass, slot, side

    def __call__(self, module: nn.Module, args: tuple, kwargs_or_output: Any) -> None:
        if not self.bypass.active_adapters:
            return
        if self.side == "input":
            if not args and not kwargs_or_output:
                raise ValueError(f"ResTuning adapter {self.bypass.adapter_name!r}: the {self.bypass.slot_names[self.slot]}"
                                 f" is empty (the module was called without arguments); hook its output instead")
            x = args[0] if args else next(iter(kwargs_or_output.values()))
        else:
            x = hidden_of(kwargs_or_output, None)  # a tuple / dict output: its first element
        self.bypass.store(self.slot, x.detach() if self.bypass.use_bypass else x)


class _Target:
    """Forward (pre-)hook on the target: x_N replaces one of its arguments, or one element of its output."""

    def __init__(self, bypass: "ResTuningBypassModule", pos: int | str, side: str, name: str) -> None:
        self.bypass, self.pos, self.side, self.name = bypass, pos, side, name

    def __call__(self, module: nn.Module, args: tuple, kwargs_or_output: Any) -> Any:
        if not self.bypass.active_adapters:
            return None
        collect = self.bypass.collect
        if collect is not None:  # multi_task_forward: keep x_N, leave the call alone
            value = hidden_of(kwargs_or_output, self.pos) if self.side == "output" else None
            collect[self.bypass.adapter_name] = self.bypass.run(value)
            return None
        if self.side == "output":
            return apply_to_hidden(kwargs_or_output, self.pos, self.bypass.run)
        args, kwargs = list(args), dict(kwargs_or_output)
        if isinstance(self.pos, int):
            if not -len(args) <= self.pos < len(args):
                raise ValueError(f"ResTuningConfig.target_hidden_pos={self.pos}: {self.name!r} was called with "
                                 f"{len(args)} positional argument(s) (keywords: {list(kwargs)}); give the index of "
                                 f"the hidden states, or their keyword as a str")
            args[self.pos] = self.bypass.run(args[self.pos])
        elif self.pos in kwargs:
            kwargs[self.pos] = self.bypass.run(kwargs[self.pos])
        else:
            raise ValueError(f"ResTuningConfig.target_hidden_pos={self.pos!r}: {self.name!r} was called without "
                             f"that keyword (keywords: {list(kwargs)}); use an int index for a positional argument")
        return tuple(args), kwargs


class ResTuningBypassModule(HookedAdapter):
    """The side network of one adapter (`restuning_<name>`, a child of the model) and its hooks."""

    weights_attribute = "bypass_blocks"

    def __init__(self, config: ResTuningConfig, depth: int, adapter_name: str) -> None:
        super().__init__(adapter_name)
        self.use_bypass = config.use_bypass
        self.depth = depth
        # thread -> {slot: feature of this forward} (slot 0: x_0, slot i: s_i); per thread, since threads
        # may run the model at the same time (USE_UNIQUE_THREAD=0)
        self._features: dict[int, dict[int, torch.Tensor]] = {}
        self.slot_names: dict[int, str] = {}
        self.target: tuple[str, int | str, str] | None = None  # (name, target_hidden_pos, hook side)
        self.collect: dict[str, torch.Tensor] | None = None  # set by multi_task_forward
        per_stem = config.tuner_cfg if isinstance(config.tuner_cfg, list) else [config.tuner_cfg] * depth

        def of(value: Any, i: int) -> Any:
            return value[i] if isinstance(value, list) else value

        self.bypass_blocks = nn.Sequential(*[
            ResTunerBypassBlock(*block_cfgs(per_stem[i], config.use_upsample, i == depth - 1), dim=of(config.dims, i),
                                layer_num=i, depth=depth, zero_init_last=config.zero_init_last,
                                upsample_out_channels=of(config.upsample_out_channels, i))
            for i in range(depth)])

    def clear_state(self) -> None:
        self._features.clear()

    # ---- hooks and the bypass itself ------------------------------------------------------------
    def probe(self, module: nn.Module, name: str, slot: int, side: str) -> None:
        self.slot_names[slot] = f"{side} of {name!r}"
        self._hook(module, _Probe(self, slot, side), side)

    def replace_at(self, module: nn.Module, name: str, pos: int | str, side: str) -> None:
        self.target = (name, pos, side)
        self._hook(module, _Target(self, pos, side, name), side)

    def _hook(self, module: nn.Module, hook: Any, side: str) -> None:
        if side == "input":
            self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        else:
            self.handles.append(module.register_forward_hook(hook))

    @property
    def features(self) -> dict[int, torch.Tensor]:
        """The features this thread has probed and the target has not used yet."""
        return self._features.get(threading.get_ident(), {})

    def store(self, slot: int, feature: torch.Tensor) -> None:
        self._features.setdefault(threading.get_ident(), {})[slot] = feature

    def run(self, origin: torch.Tensor) -> torch.Tensor:
        """x_N from the features this thread probed in this forward; each is used once, then dropped.
        `origin` (the value x_N replaces) is not read: the bypass starts from x_0."""
        features = self._features.pop(threading.get_ident(), {})
        missing = [self.slot_names[s] for s in range(self.depth + 1) if s not in features]
        if missing:
            raise RuntimeError(f"ResTuning adapter {self.adapter_name!r}: the target module ran before the "
                               f"backbone produced {missing[0]}; the target must come after the root and every "
                               f"stem in the forward pass (and run once per forward)")
        x = features[0]  # x_0
        stems = [features[i] for i in range(1, self.depth + 1)]  # s_1..s_N
        for i, block in enumerate(self.bypass_blocks):
            next_size = stems[i + 1].shape[2:] if i + 1 < self.depth else None  # aux resizes to the next stem
            x = block(stems[i], x, next_size)  # x_i = aux_i( lateral_i(s_i) + vertical_i(x_{i-1}) )
        return x

    def extra_repr(self) -> str:
        return f"adapter={self.adapter_name!r}, depth={self.depth}, use_bypass={self.use_bypass}"


@register_tuner
class ResTuningTuner(Tuner):
    """Adds the child `restuning_<name>` to the model and hooks root, stems and target."""

    config_class = ResTuningConfig
    identity_at_init = False  # x_N replaces the target's input: the output changes at once
    mergeable = False
    not_mergeable_reason = "the bypass is a separate non-linear network whose output replaces a feature"

    @classmethod
    def locate(cls, model: nn.Module, config: ResTuningConfig) -> tuple[str | None, list[str], str]:
        """(root, stems in bypass order, target) module names; raises ValueError naming the field."""
        kw = {"config_name": "ResTuningConfig"}
        root = None
        if config.root_modules is not None:
            root = match_modules(model, config.root_modules, field_name="root_modules", **kw)[0]  # the first, as ms-swift
        found = match_modules(model, config.stem_modules, field_name="stem_modules", **kw)
        stems = found if isinstance(config.stem_modules, str) else list(dict.fromkeys(
            n for entry in config.stem_modules for n in found if name_matches(canonical_name(model, n), [entry])))
        targets = match_modules(model, config.target_modules, field_name="target_modules", **kw)
        if len(targets) != 1:
            raise ValueError(f"ResTuningConfig.target_modules={config.target_modules!r} matched {len(targets)} modules "
                             f"({', '.join(targets[:4])}); the bypass output replaces ONE module's input: narrow it, "
                             f"e.g. to {targets[-1]!r}")
        for field_name, name in [("root_modules", root), *[("stem_modules", s) for s in stems], ("target_modules", targets[0])]:
            if name is not None and isinstance(model.get_submodule(name), (nn.ModuleList, nn.ModuleDict)):
                raise ValueError(f"ResTuningConfig.{field_name}: {name!r} is a {type(model.get_submodule(name)).__name__}, "
                                 f"which is never called; select its items, e.g. r'{name}\\.\\d+'")
        return root, stems, targets[0]

    @classmethod
    def match(cls, model: nn.Module, config: ResTuningConfig) -> list[str]:
        root, stems, target = cls.locate(model, config)
        return list(dict.fromkeys([*([root] if root else []), *stems, target]))

    @classmethod
    def check(cls, model: nn.Module, config: ResTuningConfig, names: list[str]) -> None:
        if isinstance(model, nn.Sequential):
            raise ValueError("ResTuningConfig: the model is an nn.Sequential, which would run the added child "
                             "'restuning_<name>' as a layer; wrap it in an nn.Module with its own forward")
        depth = len(cls.locate(model, config)[1])
        for field_name in ("dims", "tuner_cfg", "upsample_out_channels"):
            value = getattr(config, field_name)
            if isinstance(value, list) and len(value) != depth:
                raise ValueError(f"ResTuningConfig.{field_name}: a list needs one entry per stem module; "
                                 f"stem_modules matched {depth}, the list has {len(value)}")

    @classmethod
    def inject(cls, model: nn.Module, config: ResTuningConfig, adapter_name: str) -> None:
        root, stems, target = cls.locate(model, config)
        attribute = f"restuning_{adapter_name}"
        if hasattr(model, attribute):
            raise ValueError(f"adapter_name={adapter_name!r}: the model already has an attribute {attribute!r}")
        bypass = ResTuningBypassModule(config, len(stems), adapter_name)
        param = next(model.parameters(), None)
        if param is not None:
            bypass.to(param.device)  # float32 weights; each sub-tuner casts its input and output
        if root is not None:
            bypass.probe(model.get_submodule(root), root, 0, config.root_modules_hook)
        else:  # ms-swift: without a root, x_0 is the first stem's input
            bypass.probe(model.get_submodule(stems[0]), stems[0], 0, "input")
        for i, name in enumerate(stems, start=1):
            bypass.probe(model.get_submodule(name), name, i, config.stem_modules_hook)
        bypass.replace_at(model.get_submodule(target), target, config.target_hidden_pos, config.target_modules_hook)
        model.add_module(attribute, bypass)

    @classmethod
    def from_saved_state(cls, model: nn.Module, config: ResTuningConfig, weights: dict[str, Any],
                         adapter_name: str) -> dict[str, Any]:
        """A checkpoint saved as adapter `x` names its weights `restuning_x.…`: load them as this adapter's."""
        return rename_attached(weights, "restuning_", adapter_name)


# ---- multi-task inference: one backbone forward, K bypasses ----------------------------------------------
def multi_task_forward(model: nn.Module, adapter_names: list[str], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """{adapter: model output} for several ResTuning adapters from ONE backbone forward.

    The backbone runs once on the batch (B items); every listed adapter's probes read its features, each
    bypass computes its own x_N, and from the target on the model runs once on the K·B batch
    [x_N^1; ...; x_N^K], whose output is split back into K outputs of B items each. Equal to K forwards with
    one adapter active at a time (tests/test_bypass.py), for roughly the cost of one backbone forward plus
    K bypasses and K passes of what follows the target.

        outputs = multi_task_forward(swift_model, ["cifar", "dtd", "flowers"], pixel_values=x)
        logits_cifar = outputs["cifar"].logits

    Requirements (an error says which is missing): every adapter is a ResTuning adapter of this model with
    the same target module, position and hook side; the part of the model after the target treats batch
    items independently and reads no tensor computed before it (ms-swift's recipes: a ViT's final norm and
    head, a U-Net's conv_norm_out); the backbone before the target gives the same features for every task
    (other adapters of other tuners stay as they are for all K). Only the listed ResTuning adapters take
    part; the active/inactive state of every adapter is restored afterwards.
    """
    base = getattr(model, "base_model", model)
    bypasses = {}
    for name in adapter_names:
        bypass = getattr(base, f"restuning_{name}", None)
        if not isinstance(bypass, ResTuningBypassModule):
            raise ValueError(f"multi_task_forward: {name!r} is not a ResTuning adapter of this model "
                             f"(it has no child 'restuning_{name}')")
        bypasses[name] = bypass
    if not bypasses:
        raise ValueError("multi_task_forward: adapter_names is empty; give the ResTuning adapters to run")
    targets = {b.target for b in bypasses.values()}
    if len(targets) != 1:
        raise ValueError(f"multi_task_forward: the adapters replace different targets {sorted(map(str, targets))}; "
                         f"one shared backbone forward needs one target (module, target_hidden_pos, hook side)")
    target_name, pos, side = targets.pop()
    everyone = [m for m in base.children() if isinstance(m, ResTuningBypassModule) and m.adapter_name is not None]
    before = {id(m): m.is_active(m.adapter_name) for m in everyone}
    collected: dict[str, torch.Tensor] = {}
    k = len(bypasses)

    def batched(value: torch.Tensor) -> torch.Tensor:
        missing = [n for n in adapter_names if n not in collected]
        if missing:
            raise RuntimeError(f"multi_task_forward: the target {target_name!r} ran before adapter {missing[0]!r} "
                               f"computed its bypass")
        return torch.cat([collected[n].to(value.dtype) for n in adapter_names])  # (K·B, ...)

    def replace_input(module: nn.Module, args: tuple, kwargs: dict) -> Any:
        args, kwargs = list(args), dict(kwargs)
        if isinstance(pos, int):
            args[pos] = batched(args[pos])
        else:
            kwargs[pos] = batched(kwargs[pos])
        return tuple(args), kwargs

    def replace_output(module: nn.Module, args: tuple, output: Any) -> Any:
        return apply_to_hidden(output, pos, batched)

    target = base.get_submodule(target_name)
    handle = (target.register_forward_pre_hook(replace_input, with_kwargs=True) if side == "input"
              else target.register_forward_hook(replace_output))  # registered last: runs after the adapters' hooks
    try:
        for m in everyone:
            m.set_adapter_active(m.adapter_name, m.adapter_name in bypasses)
            m.collect = collected if m.adapter_name in bypasses else None
        output = model(*args, **kwargs)
    finally:
        handle.remove()
        for m in everyone:
            m.set_adapter_active(m.adapter_name, before[id(m)])
            m.collect = None
            m._features.pop(threading.get_ident(), None)
    batch = next(iter(collected.values())).shape[0]
    return {name: _take(output, i * batch, (i + 1) * batch, k * batch) for i, name in enumerate(adapter_names)}


def _take(output: Any, start: int, stop: int, total: int) -> Any:
    """`output` with every tensor of batch size `total` cut to items start:stop (other values kept)."""
    if isinstance(output, torch.Tensor):
        return output[start:stop] if output.dim() and output.shape[0] == total else output
    if isinstance(output, dict):  # dicts, transformers' ModelOutput, diffusers' BaseOutput
        items = {key: _take(value, start, stop, total) for key, value in output.items()}
        return type(output)(**items) if type(output) is not dict else items
    if isinstance(output, (tuple, list)):
        return type(output)(_take(value, start, stop, total) for value in output)
    return output

