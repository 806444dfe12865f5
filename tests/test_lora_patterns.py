"""LoRA's rank_pattern / alpha_pattern (PEFT's, which ms-swift's LoRAConfig inherits) equal PEFT's, and a
PEFT field swiftlite does not implement is refused instead of ignored."""
import json
import os

import peft
import pytest
import torch

from swiftlite import Swift
from swiftlite.core.config import ConfigError, SwiftConfig
from swiftlite.testing import models
from swiftlite.tuners.lora import LoRAConfig

PATTERNS = {"rank_pattern": {"v_proj": 2, r"layers\.0\.self_attn\.q_proj": 3}, "alpha_pattern": {"v_proj": 5.0}}


def test_for_module_follows_peft_matching():
    config = LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **PATTERNS)
    assert (config.for_module("model.layers.1.self_attn.v_proj").r, config.for_module("model.layers.1.self_attn.v_proj").lora_alpha) == (2, 5.0)
    assert config.for_module("model.layers.0.self_attn.q_proj").r == 3
    assert config.for_module("model.layers.1.self_attn.q_proj") is config  # no key matches: r, lora_alpha
    assert config.for_module("model.layers.1.self_attn.xv_proj") is config  # a key matches after a dot only


def test_equals_peft_and_loads_peft_checkpoint(tmp_path):
    torch.manual_seed(0)
    pm = peft.get_peft_model(models.llama()[0], peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                init_lora_weights=False, **PATTERNS))
    pm.save_pretrained(str(tmp_path))
    model, inputs = models.llama()
    sm = Swift.from_pretrained(model, str(tmp_path))
    layer = sm.base_model.model.layers[1].self_attn
    assert layer.v_proj.lora_A["default"].weight.shape == (2, 32) and layer.v_proj.scaling["default"] == 5.0 / 2
    assert sm.base_model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.shape[0] == 3
    with torch.no_grad():
        torch.testing.assert_close(sm(**inputs).logits, pm(**inputs).logits)
    sm.save_pretrained(str(tmp_path / "ours"), peft_format=True)  # and back: PEFT builds the same ranks
    back = peft.PeftModel.from_pretrained(models.llama()[0], str(tmp_path / "ours"))
    with torch.no_grad():
        torch.testing.assert_close(back(**inputs).logits, pm(**inputs).logits)


@pytest.mark.parametrize("field,value", [("lora_bias", True), ("layers_to_transform", [0]),
                                         ("exclude_modules", ["q_proj"]), ("trainable_token_indices", [1])])
def test_unimplemented_peft_field_that_changes_the_math_is_refused(field, value):
    raw = {"swift_type": "LORA", "r": 4, "target_modules": ["q_proj"], field: value}
    with pytest.raises(ConfigError, match=field):
        SwiftConfig.from_dict(raw)
    raw[field] = None  # unset: loads (ms-swift writes every PEFT field)
    assert SwiftConfig.from_dict(raw).r == 4


def test_ms_swift_fixture_config_with_patterns_round_trips():
    path = os.path.join(os.path.dirname(__file__), "fixtures", "ms_swift", "lora_rank_alpha_pattern", "checkpoint",
                        "default", "adapter_config.json")
    with open(path) as fh:
        config = SwiftConfig.from_dict(json.load(fh))
    assert config.rank_pattern == {"v_proj": 2} and config.alpha_pattern == {"v_proj": 2}
    assert config.to_dict()["rank_pattern"] == {"v_proj": 2}  # written back for ms-swift
