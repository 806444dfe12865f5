"""The conformance kit over every registered tuner, every tiny model family and every check.

CASES maps a tuner's swift_type to {model family: config factory}. A family left out must be
listed in NOT_APPLICABLE with the reason. Adding a tuner without an entry here fails
`test_every_registered_tuner_has_cases`, so no tuner escapes the kit. Each (tuner, family, check)
is its own test, so one broken promise does not hide the others.
"""
import pytest

import swiftlite.tuners  # noqa: F401  (registers every tuner)
from swiftlite.core import TUNERS
from swiftlite.testing import CHECKS, Case, check_tuner, models

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
    "RESTUNING": {  # bypass: x_0 at a root, s_i at the stems, x_N replaces the target's input
        "mlp": lambda: T.ResTuningConfig(dims=24, root_modules="fc2", stem_modules=["fc1", "fc2"], target_modules="head",
                                         tuner_cfg={"lateral_cfg": {"res_adapter": {"adapter_length": 8}},
                                                    "vertical_cfg": "res_adapter"}),
        "cnn": lambda: T.ResTuningConfig(dims=8, stem_modules=["conv2", "conv1"], target_modules="norm"),
        "bert": lambda: T.ResTuningConfig(dims=32, root_modules="embeddings", root_modules_hook="output",
                                          stem_modules=["encoder.layer.0", "encoder.layer.1.attention"],
                                          target_modules="encoder.layer.1.output.LayerNorm"),
        "llama": lambda: T.ResTuningConfig(dims=32, root_modules=r"model\.embed_tokens", root_modules_hook="output",
                                           stem_modules=r"model\.layers\.\d+", target_modules="model.norm",
                                           zero_init_last=True),
        "gpt2": lambda: T.ResTuningConfig(dims=32, stem_modules=r"transformer\.h\.\d+", target_modules="transformer.ln_f",
                                          tuner_cfg="res_adapter"),
        "vit": lambda: T.ResTuningConfig(dims=32, root_modules=r"vit\.embeddings", root_modules_hook="output",
                                         stem_modules=r"vit\.layers\.\d+", target_modules="vit.layernorm"),
        "unet": lambda: T.ResTuningConfig(dims=[32, 16], root_modules="mid_block", root_modules_hook="output",
                                          stem_modules=["up_blocks.0.resnets.0", "up_blocks.1"],
                                          target_modules="conv_norm_out", tuner_cfg="res_group_adapter",
                                          use_upsample=True, upsample_out_channels=[16, None]),
    },
    "RESTUNING-SD": {  # ms-swift's Stable Diffusion recipe: stems mid_block + up_blocks.*, upsampling aux tuners
        "unet": lambda: T.ResTuningConfig(dims=[32, 32, 16], root_modules="mid_block", root_modules_hook="output",
                                          stem_modules=["mid_block", "up_blocks.0", "up_blocks.1"],
                                          target_modules="conv_norm_out", tuner_cfg="res_group_adapter",
                                          use_upsample=True, upsample_out_channels=[32, 16, None], zero_init_last=True),
    },
    "UTUNING": {  # x' = OP(x) + T(x): one Res-Tuner per operation; blocks and their sub-operations nest
        "mlp": lambda: T.UTuningConfig(tuner={"fc1": "res_lora", "fc2": "res_attn"}, r=4, num_heads=2),
        "cnn": lambda: T.UTuningConfig(target_modules=["conv2"], dim=8, tuner="res_adapter", adapter_length=4),
        "bert": lambda: T.UTuningConfig(tuner={r".*attention\.self": "res_prefix", "intermediate": "res_lora",
                                               r".*layer\.\d+\.output": "res_attn"}, num_tokens=3, r=4),
        "llama": lambda: T.UTuningConfig(tuner={"self_attn": "res_prompt", "mlp": "res_adapter",
                                                r"model\.layers\.1": "res_attn"}, num_tokens=3, adapter_length=8, r=4),
        "gpt2": lambda: T.UTuningConfig(tuner={r".*h\.\d+\.attn": "res_attn", r".*h\.\d+\.mlp": "res_lora"}, r=4),
        "vit": lambda: T.UTuningConfig(tuner={r".*layers\.\d+\.attention": "res_prefix", r".*layers\.\d+\.mlp": "res_adapter",
                                              r"vit\.layers\.0": "res_attn"}, num_tokens=3, adapter_length=8, r=4),
        "unet": lambda: T.UTuningConfig(tuner={"mid_block": "res_adapter", r"up_blocks\.0\.resnets\.0": "res_lora",
                                               r"up_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1": "res_prefix"},
                                        adapter_length=8, num_tokens=3, r=4),
    },
    "RESATTN": {
        "mlp": lambda: T.ResAttnConfig(target_modules=["fc2"], r=4, num_heads=2),
        "cnn": lambda: T.ResAttnConfig(target_modules=["conv2"], dim=8, r=4, num_heads=2),
        "bert": lambda: T.ResAttnConfig(target_modules=r".*attention\.self", r=8, num_heads=2),
        "llama": lambda: T.ResAttnConfig(target_modules=r".*layers\.\d+\.self_attn", r=8, num_heads=2),
        "gpt2": lambda: T.ResAttnConfig(target_modules=r".*h\.\d+\.mlp", r=8, num_heads=2),
        "vit": lambda: T.ResAttnConfig(target_modules=r".*layers\.\d+\.attention", r=8, num_heads=2),
        "unet": lambda: T.ResAttnConfig(target_modules=r"up_blocks\.1\.attentions\.0\.transformer_blocks\.0\.(attn1|ff)",
                                        r=8, num_heads=2),
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
    "DIFFFIT": {  # scale_modules: the residual branches' output projections (γ); biases and norms everywhere
        "mlp": lambda: T.DiffFitConfig(scale_modules=["fc2"]),
        "cnn": lambda: T.DiffFitConfig(scale_modules=["conv2"]),
        "bert": lambda: T.DiffFitConfig(scale_modules=r".*layer\.\d+\.(attention\.output|output)\.dense"),
        "llama": lambda: T.DiffFitConfig(scale_modules=["o_proj", "down_proj"]),
        "gpt2": lambda: T.DiffFitConfig(scale_modules=["attn.c_proj", "mlp.c_proj"]),
        "vit": lambda: T.DiffFitConfig(scale_modules=["attention.o_proj", "mlp.fc2"]),
        "unet": lambda: T.DiffFitConfig(scale_modules=r".*(to_out\.0|ff\.net\.2|resnets\.\d+\.conv2)"),
    },
    "HYDRA": {  # the output projections of attention and MLP, as the reference
        "mlp": lambda: T.HydraConfig(target_modules=["fc1", "fc2"]),
        "bert": lambda: T.HydraConfig(target_modules=r".*layer\.\d+\.(attention\.output|output)\.dense"),
        "llama": lambda: T.HydraConfig(target_modules=["o_proj", "down_proj"]),
        "gpt2": lambda: T.HydraConfig(target_modules=["attn.c_proj", "mlp.c_proj"]),
        "vit": lambda: T.HydraConfig(target_modules=["attention.o_proj", "mlp.fc2"]),
        "unet": lambda: T.HydraConfig(target_modules=r".*(to_out\.0|ff\.net\.2)"),
    },
    "SHIRA": {
        "mlp": lambda: T.ShiraConfig(target_modules=["fc1", "fc2"], r=2),
        "cnn": lambda: T.ShiraConfig(target_modules=["head"], r=1),
        "bert": lambda: T.ShiraConfig(target_modules=["query", "value"], r=2, random_seed=7),
        "llama": lambda: T.ShiraConfig(target_modules=["q_proj", "v_proj"], r=2),
        "vit": lambda: T.ShiraConfig(target_modules=["q_proj", "v_proj", "fc1"], r=2),
        "unet": lambda: T.ShiraConfig(target_modules=r".*(to_q|to_v)", r=2),
    },
    "BINARY_ADAPTER": {  # beside each MLP (the reference: beside norm2 + mlp of each ViT block)
        "mlp": lambda: T.BinaryAdapterConfig(target_modules=["fc2"], adapter_length=4),
        "bert": lambda: T.BinaryAdapterConfig(target_modules=r".*layer\.\d+\.intermediate", adapter_length=4),
        "llama": lambda: T.BinaryAdapterConfig(target_modules=r".*layers\.\d+\.mlp", adapter_length=4),
        "gpt2": lambda: T.BinaryAdapterConfig(target_modules=r".*h\.\d+\.mlp", adapter_length=4),
        "vit": lambda: T.BinaryAdapterConfig(target_modules=r".*layers\.\d+\.mlp", adapter_length=4),
        "unet": lambda: T.BinaryAdapterConfig(target_modules=r".*transformer_blocks\.\d+\.ff", adapter_length=4),
    },
    "MOSA": {
        "mlp": lambda: T.MoSAConfig(target_modules=["fc2"], adapter_length=8),
        "bert": lambda: T.MoSAConfig(target_modules=r".*layer\.\d+\.intermediate", adapter_length=8),
        "llama": lambda: T.MoSAConfig(target_modules=r".*layers\.\d+\.mlp", adapter_length=8),
        "gpt2": lambda: T.MoSAConfig(target_modules=r".*h\.\d+\.mlp", adapter_length=8),
        "vit": lambda: T.MoSAConfig(target_modules=r".*layers\.\d+\.mlp", adapter_length=8, num_experts=2),
        "unet": lambda: T.MoSAConfig(target_modules=r".*transformer_blocks\.\d+\.ff", adapter_length=8),
    },
    "SCT": {  # channels given here; tests/test_relatives.py picks them from data with select_salient_channels
        "mlp": lambda: T.SCTConfig(target_modules=["fc2"], salient_channels=[0, 3, 5, 7], top_k=4),
        "bert": lambda: T.SCTConfig(target_modules=r"encoder\.layer\.\d+", salient_channels=[1, 2, 30, 31], top_k=4),
        "llama": lambda: T.SCTConfig(target_modules=r"model\.layers\.\d+", top_k=4,
                                     salient_channels={"model.layers.0": [1, 2, 3, 4], "model.layers.1": [5, 6, 7, 31]}),
        "gpt2": lambda: T.SCTConfig(target_modules=r"transformer\.h\.\d+", salient_channels=[0, 8, 16, 24], top_k=4),
        "vit": lambda: T.SCTConfig(target_modules=r"vit\.layers\.\d+", salient_channels=[0, 3, 5, 7], top_k=4),
        "unet": lambda: T.SCTConfig(target_modules=r".*attentions\.\d+\.transformer_blocks\.0", salient_channels=[0, 3, 5, 7],
                                    top_k=4),
    },
    "neftune": {
        "mlp": lambda: T.NEFTuneConfig(),
        "bert": lambda: T.NEFTuneConfig(),
        "llama": lambda: T.NEFTuneConfig(),
        "gpt2": lambda: T.NEFTuneConfig(),
        "vit": lambda: T.NEFTuneConfig(),
    },
    "part": {
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
    "SCETuning": {
        "unet": lambda: T.SCETuningConfig(dims=[32, 16, 16, 16], target_modules=r"up_blocks\.\d+\.resnets\.\d+"),
        "cnn": lambda: T.SCETuningConfig(dims=8, target_modules=["conv1"], tuner_mode="encoder"),
    },
    "SCETUNING-IDENTITY": {  # ms-swift's alias of encoder mode, on the U-Net's down-block resnets
        "unet": lambda: T.SCETuningConfig(dims=[16, 32], target_modules=r"down_blocks\.\d+\.resnets\.0", tuner_mode="identity"),
    },
    "SCETUNING-CSC": {  # the built-in condition encoder; the kit passes no condition (c = 0; tests/test_csc.py passes one)
        "unet": lambda: T.SCETuningConfig(dims=[32, 16, 16, 16], target_modules=r"up_blocks\.\d+\.resnets\.\d+",
                                          condition_channels=1, condition_dims=[8, 16]),
    },
    "longlora": {  # T = 6 tokens: groups of 3, shifted by 1 in training
        "llama": lambda: T.LongLoRAConfig(target_modules=["q_proj", "v_proj"], group_size_ratio=0.5),
    },
    "reft": {  # the first nn.ModuleList is the layer stack
        "llama": lambda: T.ReftConfig(layers=[0, 1]),
        "gpt2": lambda: T.ReftConfig(intervention_type="NoreftIntervention"),
        "bert": lambda: T.ReftConfig(layer_key="encoder.layer", intervention_type="DireftIntervention"),
        "vit": lambda: T.ReftConfig(r=2),
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
    "neftune": {"cnn": "no token embedding", "unet": "no input token embedding"},
    "HYDRA": {"cnn": "the branches are linear maps on the last axis; a conv layer's output has channels on axis 1"},
    "SHIRA": {"gpt2": "GPT-2's layers are transformers' Conv1D; SHiRA supports nn.Linear only, as in PEFT"},
    "BINARY_ADAPTER": {"cnn": "conv features are (B, C, H, W): a last-dim bottleneck would mix the width axis"},
    "MOSA": {"cnn": "conv features are (B, C, H, W): a last-dim bottleneck would mix the width axis"},
    "SCT": {"cnn": "conv features keep channels on axis 1; SCT selects channels of token features (last axis)"},
    "SCETuning": dict.fromkeys(["mlp", "bert", "llama", "gpt2", "vit"], "no U-Net skip connections (conv feature maps "
                               "concatenated into a decoder); on tokens it would be the Adapter tuner"),
    "longlora": dict.fromkeys(["mlp", "cnn", "bert", "gpt2", "vit", "unet"], "S²-Attn needs LLaMA-structure causal "
                              "attention (LlamaAttention, MistralAttention, Qwen2Attention); ms-swift supports only llama"),
    "reft": {"mlp": "no stack of layers (nn.ModuleList) whose outputs are token hidden states",
             "cnn": "no stack of layers (nn.ModuleList) whose outputs are token hidden states",
             "unet": "its block outputs are conv feature maps (B, C, H, W), not token hidden states"},
    "LLAMAPRO": {
        "mlp": "no stack of repeated blocks", "cnn": "no stack of repeated blocks",
        "bert": "post-LN blocks cannot start as the identity", "unet": "U-Net blocks are not a stack of identity-able blocks",
    },
}


VARIANTS = {"LORA-DORA-RSLORA", "SCETUNING-IDENTITY", "SCETUNING-CSC", "RESTUNING-SD"}  # extra case sets, not registered tuners


def _public_tuners():
    return sorted(t for t in TUNERS if not t.startswith("_"))


def test_every_registered_tuner_has_cases():
    for swift_type in _public_tuners():
        covered = set(CASES.get(swift_type, {})) | set(NOT_APPLICABLE.get(swift_type, {}))
        assert swift_type in CASES, f"{swift_type}: add conformance cases to tests/test_conformance.py"
        assert covered == set(FAMILIES), f"{swift_type}: families without a case or a reason: {set(FAMILIES) - covered}"


def _marks(family):
    return [pytest.mark.slow] if family == "unet" else []


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize(
    "swift_type,family",
    [pytest.param(t, f, marks=_marks(f)) for t in sorted(CASES) for f in FAMILIES if f in CASES[t]],
)
def test_conformance(swift_type, family, check, tmp_path):
    case = Case(CASES[swift_type][family], getattr(models, family), tmp_path=str(tmp_path))
    skipped = CHECKS[check](case)
    if skipped is not None:
        pytest.skip(skipped)


def test_check_tuner_reports_every_failure_not_only_the_first():
    """A tuner whose forward ignores activation breaks several promises; all are reported, in order."""
    from dataclasses import dataclass, field

    import torch.nn as nn

    from swiftlite.core import Tuner, register_tuner
    from swiftlite.core.config import TUNERS as registry
    from swiftlite.tuners.ia3 import IA3Config, IA3Layer

    class AlwaysOnIA3Layer(IA3Layer):
        @property
        def active_adapters(self):
            return [n for n in self.adapter_names if n not in self.merged_adapters]  # BUG: ignores activation

    @dataclass
    class AlwaysOnConfig(IA3Config):
        swift_type: str = field(default="_ALWAYS_ON_IA3")

    @register_tuner
    class AlwaysOnTuner(Tuner):
        config_class = AlwaysOnConfig
        layer_class = AlwaysOnIA3Layer
        target_types = (nn.Linear,)
        mergeable = True

    try:
        with pytest.raises(AssertionError) as caught:
            check_tuner(lambda: AlwaysOnConfig(target_modules=["fc1"]), models.mlp, tmp_path=None)
    finally:
        registry.pop("_ALWAYS_ON_IA3")
    lines = str(caught.value).splitlines()
    # disable: still applied inside disable_adapter(); merge: "base after unmerge" is checked while disabled;
    # two_adapters: "no adapter active" is not the base
    assert [line.split(":")[0] for line in lines] == ["disable", "merge", "two_adapters"]


def test_check_tuner_passes_a_correct_tuner_and_lists_skips():
    report = check_tuner(lambda: swiftlite.tuners.SideConfig(dim=24, target_modules=["fc2"], side_module_name="mlp"),
                         models.mlp)
    assert report.passed == ["perturbed", "save_load", "disable", "train", "two_adapters", "delete", "invalid_config"]
    assert set(report.skipped) == {"identity", "merge"} and not report.failed


def test_kit_leaves_the_global_rng_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_tuner(lambda: swiftlite.tuners.IA3Config(target_modules=["fc1"]), models.mlp)  # its factory seeds torch
    assert torch.equal(torch.rand(3), expected)
