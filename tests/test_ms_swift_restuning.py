"""swiftlite loads ms-swift's Res-Tuning checkpoints on a diffusers U-Net and computes what ms-swift computed.

The fixtures `tests/fixtures/ms_swift/restuning_unet*/` (made by make_restuning.py with ms-swift 4.6.0)
exercise what the BERT fixtures cannot: (B, C, H, W) features, group adapters, the upsampling aux tuner
with its conv between decoder stages, a gate on a group adapter and a scale on a Res-Adapter. The BERT
fixtures `restuning/`, `restuning_dict/` are checked by tests/test_ms_swift_fixtures.py.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("diffusers")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "ms_swift")
NAMES = ["restuning_unet", "restuning_unet_dict"]


def _fixture(name: str):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    with open(os.path.join(FIXTURES, name, "meta.json")) as fh:
        meta = json.load(fh)
    tensors = load_file(os.path.join(FIXTURES, name, "expected_output.safetensors"))
    inputs = {k: tensors[k] for k in ("sample", "timestep", "encoder_hidden_states")}
    base = UNet2DConditionModel.from_pretrained(os.path.join(FIXTURES, meta["base"])).eval()
    return base, inputs, tensors["output"]


@pytest.mark.parametrize("name", NAMES)
def test_swiftlite_loads_ms_swift_unet_checkpoint(name):
    from swiftlite import Swift

    base, inputs, expected = _fixture(name)
    with torch.no_grad():
        y_base = base(**inputs).sample
    assert (y_base - expected).abs().max() > 1e-3  # the adapter changes the output: matching it is a real check
    model = Swift.from_pretrained(base, os.path.join(FIXTURES, name, "checkpoint"))
    assert hasattr(base, "restuning_default") and base.restuning_default.bypass_blocks[0].aux_tuner.tuner.conv
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).sample, expected, rtol=1e-5, atol=1e-5)
        with model.disable_adapter():
            torch.testing.assert_close(model(**inputs).sample, y_base)


def test_unet_fixture_round_trip_in_swiftlite(tmp_path):
    """What swiftlite saves from the loaded checkpoint has ms-swift's keys and loads to the same output."""
    from safetensors.torch import load_file

    from swiftlite import Swift

    base, inputs, expected = _fixture("restuning_unet_dict")
    folder = os.path.join(FIXTURES, "restuning_unet_dict", "checkpoint")
    model = Swift.from_pretrained(base, folder)
    model.save_pretrained(str(tmp_path))
    ours = load_file(os.path.join(tmp_path, "default", "adapter_model.safetensors"))
    theirs = load_file(os.path.join(folder, "default", "adapter_model.safetensors"))
    assert set(ours) == set(theirs)
    fresh, _, _ = _fixture("restuning_unet_dict")
    with torch.no_grad():
        torch.testing.assert_close(Swift.from_pretrained(fresh, str(tmp_path))(**inputs).sample, expected,
                                   rtol=1e-5, atol=1e-5)
