"""The conformance kit over every registered tuner and every tiny model family.

CASES maps a tuner's swift_type to {model family: config factory}. A family left out must be
listed in NOT_APPLICABLE with the reason. Adding a tuner without an entry here fails
`test_every_registered_tuner_has_cases`, so no tuner escapes the kit.
"""
import pytest

import swiftlite.tuners  # noqa: F401  (registers every tuner)
from swiftlite.core import TUNERS
from swiftlite.testing import check_tuner, models

T = swiftlite.tuners
FAMILIES = ["mlp", "cnn", "bert", "llama", "gpt2", "vit", "unet"]

CASES = {
    "LORA": {
        "mlp": lambda: T.LoRAConfig(target_modules=["embed", "fc1", "fc2", "head"]),
        "cnn": lambda: T.LoRAConfig(target_modules=["conv1", "conv2"], r=2),
        "gpt2": lambda: T.LoRAConfig(target_modules=["c_attn", "c_fc"]),
        "bert": lambda: T.LoRAConfig(target_modules=["query", "value"]),
        "llama": lambda: T.LoRAConfig(target_modules=["q_proj", "v_proj", "down_proj"]),
        "vit": lambda: T.LoRAConfig(target_modules=["q_proj", "v_proj", "fc1"]),
        "unet": lambda: T.LoRAConfig(target_modules=r".*(to_q|to_v|conv1)", r=2),
    },
    "LORA-DORA-RSLORA": {  # the same tuner with its options on
        "mlp": lambda: T.LoRAConfig(target_modules=["fc1", "fc2"], use_dora=True, use_rslora=True),
        "llama": lambda: T.LoRAConfig(target_modules=["q_proj", "up_proj"], use_dora=True),
        "gpt2": lambda: T.LoRAConfig(target_modules=["c_attn"], use_dora=True),
        "cnn": lambda: T.LoRAConfig(target_modules=["conv2"], use_dora=True, r=2),
    },
    "ADAPTER": {
        "mlp": lambda: T.AdapterConfig(dim=24, target_modules=["fc1", "fc2"], adapter_length=8),
        "bert": lambda: T.AdapterConfig(dim=32, target_modules=r".*layer\.\d+\.(attention\.output|output)", adapter_length=8),
        "llama": lambda: T.AdapterConfig(dim=32, target_modules=r".*layers\.\d+\.mlp", adapter_length=8),
        "gpt2": lambda: T.AdapterConfig(dim=32, target_modules=r".*h\.\d+\.mlp", adapter_length=8),
        "vit": lambda: T.AdapterConfig(dim=32, target_modules=r".*layers\.\d+\.(attention|mlp)", adapter_length=8),
        "unet": lambda: T.AdapterConfig(
            dim=16, target_modules=r"(down|up)_blocks\.\d+\.attentions\.\d+\.transformer_blocks\.\d+\.(attn1|ff)",
            adapter_length=8),
    },
    "PROMPT": {
        "bert": lambda: T.PromptConfig(dim=32, target_modules=r".*layer\.\d+", prompt_length=3, extract_embedding=True),
        "llama": lambda: T.PromptConfig(dim=32, target_modules=r".*layers\.\d+", prompt_length=3, extract_embedding=True),
        "gpt2": lambda: T.PromptConfig(dim=32, target_modules=r".*h\.\d+", prompt_length=3, extract_embedding=True),
        "vit": lambda: T.PromptConfig(dim=32, target_modules=r".*layers\.\d+", prompt_length=3, extract_embedding=True),
    },
    "PREFIX": {
        "bert": lambda: T.PrefixConfig(target_modules=r".*attention\.self", num_virtual_tokens=3),
        "llama": lambda: T.PrefixConfig(target_modules=r".*self_attn", num_virtual_tokens=3),
        "gpt2": lambda: T.PrefixConfig(target_modules=r".*h\.\d+\.attn", num_virtual_tokens=3),
        "vit": lambda: T.PrefixConfig(target_modules=r".*layers\.\d+\.attention", num_virtual_tokens=3),
    },
    "IA3": {
        "mlp": lambda: T.IA3Config(target_modules=["fc1", "fc2"], feedforward_modules=["fc2"]),
        "cnn": lambda: T.IA3Config(target_modules=["conv1", "conv2"], feedforward_modules=["conv2"]),
        "bert": lambda: T.IA3Config(target_modules=r".*(key|value|layer\.\d+\.output\.dense)",
                                    feedforward_modules=r".*layer\.\d+\.output\.dense"),
        "llama": lambda: T.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
        "gpt2": lambda: T.IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"]),
        "vit": lambda: T.IA3Config(target_modules=["k_proj", "v_proj", "mlp.fc2"], feedforward_modules=["mlp.fc2"]),
        "unet": lambda: T.IA3Config(target_modules=r".*attn\d\.(to_k|to_v)|.*ff\.net\.2", feedforward_modules=r".*ff\.net\.2"),
    },
    "BITFIT": {
        "mlp": lambda: T.BitFitConfig(),
        "cnn": lambda: T.BitFitConfig(mode="norm"),
        "bert": lambda: T.BitFitConfig(),
        "llama": lambda: T.BitFitConfig(target_modules=["q_proj", "v_proj", "down_proj"]),
        "gpt2": lambda: T.BitFitConfig(),
        "vit": lambda: T.BitFitConfig(),
        "unet": lambda: T.BitFitConfig(),
    },
    "NEFTUNE": {
        "mlp": lambda: T.NEFTuneConfig(),
        "bert": lambda: T.NEFTuneConfig(),
        "llama": lambda: T.NEFTuneConfig(),
        "gpt2": lambda: T.NEFTuneConfig(),
        "vit": lambda: T.NEFTuneConfig(),
    },
    "PART": {
        "mlp": lambda: T.PartConfig(target_modules=["fc2"]),
        "cnn": lambda: T.PartConfig(target_modules=["conv2", "norm"]),
        "bert": lambda: T.PartConfig(target_modules=r"encoder\.layer\.1\.output"),
        "llama": lambda: T.PartConfig(target_modules=r"model\.layers\.1"),
        "gpt2": lambda: T.PartConfig(target_modules=["h.1.mlp"]),
        "vit": lambda: T.PartConfig(target_modules=["classifier", "vit.layernorm"]),
        "unet": lambda: T.PartConfig(target_modules=["conv_out"]),
    },
    "SIDE": {
        "mlp": lambda: T.SideConfig(dim=24, target_modules=["fc2"], side_module_name="mlp"),
        "cnn": lambda: T.SideConfig(dim=8, target_modules=["conv2"], side_module_name="conv"),
        "bert": lambda: T.SideConfig(dim=32, target_modules=r"encoder\.layer\.\d+", side_module_name="mlp"),
        "llama": lambda: T.SideConfig(dim=32, target_modules=r"model\.layers\.\d+", side_module_name="mlp"),
        "gpt2": lambda: T.SideConfig(dim=32, target_modules=r"transformer\.h\.\d+", side_module_name="mlp"),
        "vit": lambda: T.SideConfig(dim=32, target_modules=r"vit\.layers\.\d+\.mlp", side_module_name="mlp"),
        "unet": lambda: T.SideConfig(dim=32, target_modules=["mid_block"], side_module_name="conv"),
    },
    "LLAMAPRO": {
        "llama": lambda: T.LLaMAProConfig(num_new_blocks=2),
        "gpt2": lambda: T.LLaMAProConfig(num_new_blocks=2, zero_modules=["attn.c_proj", "mlp.c_proj"]),
        "vit": lambda: T.LLaMAProConfig(num_new_blocks=2, zero_modules=["attention.o_proj", "mlp.fc2"]),
    },
}

NO_TOKENS = "no token sequence: prompts/prefixes need a transformer layer stack"
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "ADAPTER": {"cnn": "conv features are (B, C, H, W): a last-dim bottleneck would mix the width axis"},
    "PROMPT": {
        "mlp": "no layer mixes tokens, so extracted prompts cannot change the output",
        "cnn": NO_TOKENS,
        "unet": "transformer blocks are separated by convolutions on the spatial grid; inserted tokens cannot pass them",
    },
    "PREFIX": {
        "mlp": "no attention", "cnn": "no attention",
        "unet": "diffusers' Attention computes attention in processors; a processor-based prefix is not implemented yet",
    },
    "NEFTUNE": {"cnn": "no token embedding", "unet": "no input token embedding"},
    "LLAMAPRO": {
        "mlp": "no stack of repeated blocks", "cnn": "no stack of repeated blocks",
        "bert": "post-LN blocks cannot start as the identity", "unet": "U-Net blocks are not a stack of identity-able blocks",
    },
}


VARIANTS = {"LORA-DORA-RSLORA"}  # extra case sets, not registered tuners


def _public_tuners():
    return sorted(t for t in TUNERS if not t.startswith("_"))


def test_every_registered_tuner_has_cases():
    for swift_type in _public_tuners():
        covered = set(CASES.get(swift_type, {})) | set(NOT_APPLICABLE.get(swift_type, {}))
        assert swift_type in CASES, f"{swift_type}: add conformance cases to tests/test_conformance.py"
        assert covered == set(FAMILIES), f"{swift_type}: families without a case or a reason: {set(FAMILIES) - covered}"


@pytest.mark.parametrize(
    "swift_type,family",
    [(t, f) for t in sorted(CASES) for f in FAMILIES if f in CASES[t]],
)
def test_conformance(swift_type, family, tmp_path):
    check_tuner(CASES[swift_type][family], getattr(models, family), tmp_path=str(tmp_path))
