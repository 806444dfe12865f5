"""Reverse interop: does the real ms-swift load checkpoints that swiftlite saved?

Run it in a venv that has ms-swift (see tests/fixtures/ms_swift/README.md) with swiftlite importable:

    . /tmp/msswift/bin/activate
    PYTHONPATH=/path/to/swiftlite python tests/interop/ms_swift_loads_swiftlite.py

For each case: the tiny base model of tests/fixtures/ms_swift/ gets a swiftlite tuner, every
trainable weight is perturbed with a seeded generator, swiftlite saves the checkpoint and runs a
fixed input; then ms-swift's `Swift.from_pretrained` loads that checkpoint onto a fresh copy of the
base model and runs the same input. Prints one line per case and exits 1 if any case differs.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback
import warnings

import torch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ms_swift")
PERTURB_SEED = 2000  # + case index
PERTURB_SCALE = 0.1
INPUT_SEED = 1234
BASES = {"base_llama": ("LlamaForCausalLM", "logits"), "base_bert": ("BertModel", "last_hidden_state")}


def cases() -> dict:
    """name -> (base folder, swiftlite config or {adapter: config}, prepare_model kwargs)."""
    from swiftlite import AdapterConfig, LLaMAProConfig, LoRAConfig, PartConfig, PromptConfig, ResTuningConfig, SideConfig

    return {
        "lora": ("base_llama", LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]), {}),
        "lora_dora": ("base_llama", LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True), {}),
        "lora_modules_to_save": ("base_llama", LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj"],
                                                          modules_to_save=["lm_head"]), {}),
        "adapter": ("base_llama", AdapterConfig(dim=32, target_modules=r"model\.layers\.\d+\.mlp", hidden_pos=0,
                                                adapter_length=8, act_layer="gelu"), {}),
        "prompt": ("base_bert", PromptConfig(dim=32, target_modules=r".*layer\.\d+$", embedding_pos=0,
                                             attention_mask_pos=1, prompt_length=3), {}),
        "side": ("base_llama", SideConfig(dim=32, target_modules=r"model\.layers\.0\.mlp", side_module_name="mlp"), {}),
        "part": ("base_llama", PartConfig(target_modules=r"model\.layers\.1\.mlp"), {}),
        "llamapro": ("base_llama", LLaMAProConfig(model_type="llama", num_new_blocks=2), {}),
        "two_adapters": ("base_llama", {
            "alpha": LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
            "beta": LoRAConfig(r=2, lora_alpha=4, target_modules=["v_proj", "down_proj"]),
        }, {}),
        "extra_state_keys": ("base_llama", LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj"]),
                             {"extra_state_keys": [r"model\.norm\.weight"]}),
        "lora_rank_alpha_pattern": ("base_llama", LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                             rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 2}), {}),
        "restuning": ("base_bert", ResTuningConfig(
            dims=32, root_modules="embeddings", root_modules_hook="output", target_modules=r"encoder\.layer\.1\.output\.LayerNorm",
            stem_modules=["encoder.layer.0", "encoder.layer.1.attention"], tuner_cfg="res_adapter"), {}),
    }


def load_base(folder: str) -> torch.nn.Module:
    import transformers

    cls = getattr(transformers, BASES[folder][0])
    return cls.from_pretrained(os.path.join(FIXTURES, folder), attn_implementation="eager").eval()


def perturb(model: torch.nn.Module, seed: int) -> int:
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if p.requires_grad:
                p.add_(PERTURB_SCALE * torch.randn(p.shape, generator=g, dtype=p.dtype))
                n += 1
    return n


def check(name: str) -> tuple[str, str]:
    """('match' | 'mismatch' | 'error', detail) for one case."""
    import swiftlite
    from swift.tuners import Swift as MsSwift

    all_cases = cases()
    base, config, kwargs = all_cases[name]
    field = BASES[base][1]
    ids = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(INPUT_SEED))  # (B, T)
    seed = PERTURB_SEED + list(all_cases).index(name)
    with torch.random.fork_rng():  # swiftlite's own init draws from the global RNG: make it repeatable
        torch.manual_seed(seed)
        model = swiftlite.Swift.prepare_model(load_base(base), config, **kwargs)
    if perturb(model, seed) == 0:
        return "error", "swiftlite model has no trainable parameter"
    model.eval()
    with torch.no_grad():
        expected = getattr(model(input_ids=ids), field)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        files = sorted(os.path.relpath(os.path.join(r, f), tmp) for r, _, fs in os.walk(tmp) for f in fs)
        try:
            with warnings.catch_warnings(), torch.random.fork_rng():
                warnings.simplefilter("ignore")
                torch.manual_seed(seed)  # a weight ms-swift does not load keeps its init: make that repeatable
                loaded = MsSwift.from_pretrained(load_base(base), tmp)
            loaded.eval()
            with torch.no_grad():
                out = getattr(loaded(input_ids=ids), field)
        except Exception as exc:  # noqa: BLE001 - the report is the point
            return "error", f"ms-swift failed to load {files}: {type(exc).__name__}: {exc}"
    adapters = sorted(getattr(loaded, "adapters", {}) or {})
    if out.shape != expected.shape:
        return "mismatch", f"output shape {tuple(out.shape)} != swiftlite's {tuple(expected.shape)}; adapters {adapters}; files {files}"
    diff = (out - expected).abs().max().item()
    if torch.allclose(out, expected, rtol=1e-5, atol=1e-5):
        return "match", f"max abs diff {diff:.2e}; adapters {adapters}"
    return "mismatch", f"max abs diff {diff:.3g}; ms-swift adapters loaded {adapters}; files {files}"


def main() -> int:
    failed = 0
    for name in cases():
        try:
            status, detail = check(name)
        except Exception:  # noqa: BLE001
            status, detail = "error", traceback.format_exc(limit=3)
        failed += status != "match"
        print(f"{name:22s} {status:9s} {detail}", flush=True)
    print(f"{len(cases()) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
