"""A quantized base for LoRA (QLoRA: Dettmers et al., 2023, arXiv:2305.14314), from ms-swift's config names.

    base = quantize_model(model, QuantizeArguments(quant_method="bnb", quant_bits=4))   # NF4 + double quant
    base = prepare_model_for_kbit_training(base)          # PEFT's preparation (frozen base, fp32 norms, ...)
    model = Swift.prepare_model(base, LoRAConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", ...]))

QLoRA stores W0 in 4 bits and trains full-precision A, B beside it (`tuners/lora/quantized.py`)::

    h = deq(Q(W0)) x + s · B A x       Q: NF4 blockwise (64 weights share one absmax), see `nf4.py`

The quantization itself is always the library's: transformers' `BitsAndBytesConfig` / `TorchAoConfig`
(the model is loaded again through `from_pretrained` with it, as transformers quantizes at load time), and
hqq's own `AutoHQQHFModel.quantize_model` (transformers' `HqqConfig` raises NotImplementedError in the
pinned transformers 5.24, see README). `lm_head` stays in full precision (transformers' default for
bitsandbytes; done the same way for the others).

Field names follow ms-swift's `QuantizeArguments` (`quant_method`, `quant_bits`, `hqq_axis`,
`bnb_4bit_compute_dtype`, `bnb_4bit_quant_type`, `bnb_4bit_use_double_quant`, `bnb_4bit_quant_storage`).
Differences from ms-swift: `quant_method` also takes 'torchao' (int8 weight-only; 4 bits through
`IntxWeightOnlyConfig`, which stores one int4 value per byte) and not 'eetq' / 'awq' / 'gptq' (CUDA only);
`hqq_group_size` is swiftlite's (ms-swift keeps hqq's default, 64); bnb_4bit_compute_dtype defaults to
float32 (the CPU's dtype).
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..api import Swift
from ..tuners import LoRAConfig
from ..tuners.lora.quantized import backend_of, bnb4_keep_layout
from .sft import compare_tuners

_BITS = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 8), "torchao": (4, 8)}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class QuantizeArguments:
    """ms-swift's quantization arguments (`swift/llm/argument/base_args/quant_args.py`), for the CPU."""

    quant_method: str | None = None  # 'bnb', 'hqq' or 'torchao'; None: no quantization
    quant_bits: int = 4  # bnb: 4, 8; hqq: 1, 2, 3, 4, 8; torchao: 4, 8 (ms-swift's default: 4)
    hqq_axis: int | None = None  # hqq: axis the groups run along (None: hqq's default, 1)
    hqq_group_size: int = 64  # hqq: weights sharing one scale and zero point (swiftlite's field)
    bnb_4bit_compute_dtype: str = "float32"  # dtype the 4-bit weight is dequantized to for the matmul
    bnb_4bit_quant_type: str = "nf4"  # 'nf4' (NormalFloat, QLoRA) or 'fp4'
    bnb_4bit_use_double_quant: bool = True  # quantize the absmax constants too (QLoRA's double quantization)
    bnb_4bit_quant_storage: str | None = None  # dtype the packed 4-bit values are stored in (None: uint8)

    def __post_init__(self) -> None:
        if self.quant_method is not None and self.quant_method not in _BITS:
            raise ValueError(f"QuantizeArguments.quant_method: one of {sorted(_BITS)} or None on the CPU, got "
                             f"{self.quant_method!r} (eetq, awq and gptq need CUDA)")
        if self.quant_method is not None and self.quant_bits not in _BITS[self.quant_method]:
            raise ValueError(f"QuantizeArguments.quant_bits: {self.quant_method} takes {_BITS[self.quant_method]}, "
                             f"got {self.quant_bits!r}")
        if self.bnb_4bit_quant_type not in ("nf4", "fp4"):
            raise ValueError(f"QuantizeArguments.bnb_4bit_quant_type: 'nf4' or 'fp4', got {self.bnb_4bit_quant_type!r}")
        if self.bnb_4bit_compute_dtype not in _DTYPES:
            raise ValueError(f"QuantizeArguments.bnb_4bit_compute_dtype: one of {sorted(_DTYPES)}, "
                             f"got {self.bnb_4bit_compute_dtype!r}")

    def get_quantization_config(self) -> Any:
        """transformers' quantization config for `from_pretrained` (None for hqq: see the module docstring)."""
        if self.quant_method == "bnb":
            from transformers import BitsAndBytesConfig

            return BitsAndBytesConfig(
                load_in_4bit=self.quant_bits == 4, load_in_8bit=self.quant_bits == 8,
                bnb_4bit_compute_dtype=_DTYPES[self.bnb_4bit_compute_dtype],
                bnb_4bit_quant_type=self.bnb_4bit_quant_type,
                bnb_4bit_use_double_quant=self.bnb_4bit_use_double_quant,
                bnb_4bit_quant_storage=self.bnb_4bit_quant_storage)
        if self.quant_method == "torchao":
            from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
            from torchao.quantization.granularity import PerGroup
            from transformers import TorchAoConfig

            quant_type = Int8WeightOnlyConfig() if self.quant_bits == 8 else \
                IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(self.hqq_group_size))
            return TorchAoConfig(quant_type, modules_to_not_convert=["lm_head"])
        return None

    def hqq_config(self) -> dict:
        from hqq.core.quantize import BaseQuantizeConfig

        axis = {} if self.hqq_axis is None else {"axis": self.hqq_axis}
        return BaseQuantizeConfig(nbits=self.quant_bits, group_size=self.hqq_group_size, **axis)


def quantize_model(model: nn.Module | str, args: QuantizeArguments, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A quantized copy of `model` (a transformers model, or the directory of one): its linear layers
    (all but lm_head) become the library's quantized layers. `model` itself is left as it was."""
    if args.quant_method is None:
        raise ValueError("QuantizeArguments.quant_method: None means no quantization; set 'bnb', 'hqq' or 'torchao'")
    if args.quant_method == "hqq":
        from hqq.models.hf.base import AutoHQQHFModel  # optional: `pip install swiftlite[quant]`

        quantized = _load(model, dtype) if isinstance(model, str) else copy.deepcopy(model)
        AutoHQQHFModel.quantize_model(quantized, quant_config=args.hqq_config(), compute_dtype=dtype, device="cpu")
        quantized.hqq_quantized = True  # what PEFT's prepare_model_for_kbit_training looks for
        return quantized
    config = args.get_quantization_config()
    if isinstance(model, str):
        quantized = _load(model, dtype, quantization_config=config)
    else:
        with tempfile.TemporaryDirectory() as tmp:  # transformers quantizes while it loads
            model.save_pretrained(tmp)
            quantized = _load(tmp, dtype, cls=type(model), quantization_config=config)
    misread = []
    for name, module in quantized.named_modules():
        if backend_of(module) is not None and backend_of(module).name == "bnb-4bit":
            bnb4_keep_layout(module)  # see its docstring: bitsandbytes' CPU repacking fails on llama-tiny
            if module.in_features % module.weight.blocksize and module.out_features > 1:
                misread.append(name)
    if misread:
        import warnings

        warnings.warn(f"bitsandbytes' CPU kernel (dequantize_4bit) reads 4-bit weights back wrong when in_features is "
                      f"not a multiple of the block size ({quantized.get_submodule(misread[0]).weight.blocksize}): "
                      f"{len(misread)} layers ({misread[0]}, ...) compute with misread weights on a CPU (README, "
                      f"'Tuning on a quantized base')", UserWarning, stacklevel=2)
    return quantized


def _load(path: str, dtype: torch.dtype, cls: type | None = None, **kwargs: Any) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return (cls or AutoModelForCausalLM).from_pretrained(path, dtype=dtype, device_map="cpu", **kwargs)


def prepare_model_for_kbit_training(model: nn.Module, use_gradient_checkpointing: bool = True,
                                    gradient_checkpointing_kwargs: dict | None = None) -> nn.Module:
    """PEFT's `prepare_model_for_kbit_training`: freeze every base weight, cast fp16/bf16 weights that are
    not 4-bit to float32, and with gradient checkpointing make the input embeddings' output require grad
    (so checkpointed blocks have something to differentiate). Non-reentrant checkpointing by default."""
    from peft import prepare_model_for_kbit_training as peft_prepare

    kwargs = {"use_reentrant": False} if gradient_checkpointing_kwargs is None else gradient_checkpointing_kwargs
    return peft_prepare(model, use_gradient_checkpointing=use_gradient_checkpointing,
                        gradient_checkpointing_kwargs=kwargs)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as stored: every tensor of its state dict (packed 4-bit values,
    absmax / scales / zero points, code books included; torchao's tensor subclasses by their inner
    tensors), each storage counted once (tied weights share one)."""
    seen: dict[Any, int] = {}
    for tensor in model.state_dict().values():
        for t in _plain_tensors(tensor):
            key = (t.untyped_storage().data_ptr(), t.device) if t.device.type != "meta" else id(t)
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
    return sum(seen.values())


def _plain_tensors(tensor: Any) -> list[torch.Tensor]:
    if not isinstance(tensor, torch.Tensor):
        return []
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is None:
        return [tensor]
    names, _ = tensor.__tensor_flatten__()
    return [t for name in names for t in _plain_tensors(getattr(tensor, name))]


def quantized_linear_count(model: nn.Module) -> dict[str, int]:
    """{backend name: number of layers} of the quantized linear layers in `model` (wrapped by LoRA or not)."""
    counts: dict[str, int] = {}
    for module in model.modules():
        backend = backend_of(module)
        if backend is not None:
            counts[backend.name] = counts.get(backend.name, 0) + 1
    return counts


def _probe_cases() -> dict[str, Any]:
    """name -> a function quantizing an nn.Linear (d_in=128, d_out=64) with one library's real API."""
    def bnb(kind: str, **kw: Any):
        def make(linear: nn.Linear) -> nn.Module:
            import bitsandbytes as bnb

            layer = getattr(bnb.nn, kind)(128, 64, **kw)
            layer.load_state_dict(linear.state_dict())
            return layer.to("cpu")  # bitsandbytes quantizes here
        return make

    def torchao(config_name: str, **kw: Any):
        def make(linear: nn.Linear) -> nn.Module:
            import torchao.quantization as q

            holder = nn.Sequential(copy.deepcopy(linear))
            q.quantize_(holder, getattr(q, config_name)(**kw))
            return holder[0]
        return make

    def hqq(linear: nn.Linear) -> nn.Module:
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        return HQQLinear(copy.deepcopy(linear), BaseQuantizeConfig(nbits=4, group_size=64),
                         compute_dtype=torch.float32, device="cpu")

    def transformers_hqq(linear: nn.Linear) -> nn.Module:
        from transformers import HqqConfig, LlamaConfig, LlamaForCausalLM

        with tempfile.TemporaryDirectory() as tmp:
            LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=2)).save_pretrained(tmp)
            model = LlamaForCausalLM.from_pretrained(tmp, quantization_config=HqqConfig(nbits=4), device_map="cpu")
        return model.model.layers[0].mlp.down_proj

    return {
        "bitsandbytes Linear4bit nf4 + double quant": bnb("Linear4bit", quant_type="nf4", compress_statistics=True,
                                                           compute_dtype=torch.float32),
        "bitsandbytes Linear4bit fp4": bnb("Linear4bit", quant_type="fp4", compute_dtype=torch.float32),
        "bitsandbytes Linear8bitLt (LLM.int8)": bnb("Linear8bitLt", has_fp16_weights=False),
        "torchao Int8WeightOnlyConfig": torchao("Int8WeightOnlyConfig"),
        "torchao IntxWeightOnlyConfig int4": torchao("IntxWeightOnlyConfig", weight_dtype=torch.int4),
        "torchao Int4WeightOnlyConfig": torchao("Int4WeightOnlyConfig"),
        "hqq HQQLinear 4 bit": hqq,
        "transformers HqqConfig": transformers_hqq,
    }


def backend_support(seed: int = 0) -> list[dict[str, Any]]:
    """Try each library's quantized linear layer here: quantize, forward, backward through a LoRA on top.
    One row per case: `works`, the forward's max error against the float layer, or the exception raised."""
    rows = []
    for name, make in _probe_cases().items():
        torch.manual_seed(seed)
        linear, x = nn.Linear(128, 64), torch.randn(4, 128)
        try:
            quantized = make(linear)
            model = Swift.prepare_model(nn.Sequential(quantized), LoRAConfig(r=4, target_modules=["0"],
                                                                              init_lora_weights=False))
            with torch.no_grad(), model.disable_adapter():
                base_error = (model(x) - linear(x)).abs().max().item()  # |Q(W0) x - W0 x|
            model(x.requires_grad_(True)).sum().backward()
            lora_A = model.model[0].lora_A["default"].weight
            ok = lora_A.grad is not None and bool(torch.isfinite(lora_A.grad).all()) and bool(x.grad.abs().sum() > 0)
            rows.append({"case": name, "works": ok, "max_abs_error": base_error,
                         "error": None if ok else "no gradient reached the adapter or the input"})
        except Exception as error:  # the exact error is the finding
            rows.append({"case": name, "works": False, "max_abs_error": None,
                         "error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"})
    return rows


# ---- the benchmark: LoRA on each quantized base vs LoRA on the float32 base -------------------------------
VARIANTS: dict[str, QuantizeArguments | None] = {  # display name -> how the base is quantized (None: float32)
    "fp32 base": None,
    "bnb NF4 + double quant (QLoRA)": QuantizeArguments(quant_method="bnb", quant_bits=4),
    "bnb FP4": QuantizeArguments(quant_method="bnb", quant_bits=4, bnb_4bit_quant_type="fp4",
                                 bnb_4bit_use_double_quant=False),
    "bnb LLM.int8": QuantizeArguments(quant_method="bnb", quant_bits=8),
    "torchao int8 weight-only": QuantizeArguments(quant_method="torchao", quant_bits=8),
    "hqq 4-bit": QuantizeArguments(quant_method="hqq", quant_bits=4),
}


def lora_on(model: nn.Module, args: QuantizeArguments | None, lora_config: Any) -> nn.Module:
    """`model`, quantized with `args` (None: left in float32), then wrapped with LoRA `lora_config`."""
    import warnings

    if args is not None:
        with warnings.catch_warnings():  # transformers' notes on loading; the benchmark reports the numbers
            warnings.simplefilter("ignore")
            model = quantize_model(model, args)
    return Swift.prepare_model(model, lora_config)


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the (possibly quantized) linear layers of the decoder blocks (not embeddings / lm_head)."""
    total = 0
    for name, module in model.named_modules():
        if name.endswith("lm_head") or "lora_" in name:
            continue
        if backend_of(module) is not None or (type(module) is nn.Linear and not hasattr(module, "lora_A")):
            total += weight_bytes(module)
    return total


def compare_quantized(model_factory, variants: dict[str, QuantizeArguments | None], lora_config: Any,
                      train_ds, eval_ds, *, steps: int, lr: float, batch_size: int, seeds=(0, 1, 2),
                      collate_fn=None, eval_fn=None, measure_steps: int = 5, measure_rounds: int = 1,
                      progress: bool = True) -> list[dict[str, Any]]:
    """LoRA `lora_config` on `model_factory()` quantized each way, run by :func:`swiftlite.llm.compare_tuners`
    once per seed (same data, steps, lr). One row per variant: weight bytes of the base and of its linear
    layers, counted training memory (weights as stored + saved for backward + gradients + AdamW state),
    median step time over seeds and rounds, and mean / std over seeds of the held-out loss (and of each
    metric `eval_fn(model, name)` returns)."""
    import functools

    import numpy as np

    configs = {name: functools.partial(lora_on, args=args, lora_config=lora_config) for name, args in variants.items()}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for seed in seeds:
        for row in compare_tuners(model_factory, configs, train_ds, eval_ds, steps=steps, lr=lr,
                                  batch_size=batch_size, seed=seed, collate_fn=collate_fn, eval_fn=eval_fn,
                                  measure_steps=measure_steps, measure_rounds=measure_rounds, progress=progress):
            runs[row["name"]].append(row)
    rows = []
    for name, args in variants.items():
        model = configs[name](model_factory())
        first = runs[name][0]
        parts = first["memory_parts_bytes"]
        stored = weight_bytes(model.base_model)  # quantized weights as stored + LoRA's A, B
        row = {"name": name, "quant_method": None if args is None else args.quant_method,
               "quant_bits": 32 if args is None else args.quant_bits,
               "base_weight_bytes": stored - sum(p.numel() * p.element_size() for p in model.parameters()
                                                 if p.requires_grad),
               "linear_weight_bytes": linear_weight_bytes(model.base_model),
               "train_memory_bytes": stored + parts["saved for backward"] + parts["gradients"]
               + parts["optimizer state"],
               "step_time_s": float(np.median([t for r in runs[name] for t in r["step_time_rounds"]])),
               "trainable_params": first["trainable_params"], "seeds": len(runs[name])}
        metrics = ["eval_loss_init", "eval_loss"] + [k for k in first if k.startswith("exact_match")]
        for metric in metrics:
            values = [r[metric] for r in runs[name]]
            row[metric], row[metric + "_std"] = float(np.mean(values)), float(np.std(values))
        rows.append(row)
    return rows
