"""swiftlite loads SCETuning checkpoints written by the real ms-swift and computes what ms-swift computed.

The fixtures (tests/fixtures/ms_swift/scetuning*/, made by make_scetuning.py with ms-swift 4.6.0 and
diffusers 0.42.1): a tiny random diffusers U-Net saved with save_pretrained (`scetuning_base/`), one
ms-swift checkpoint per folder (decoder mode on the up-block resnets; encoder mode on conv_in, an
attention, a downsampler ModuleList and a resnet ModuleList; two decoder-mode adapters nested on the same
resnets), every tuner weight perturbed, and ms-swift's output on a stored input. The checkpoint keys are ms-swift's `<target>.scetuner_default.tuner_op.ln1.weight`.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "ms_swift")
NAMES = ["scetuning", "scetuning_encoder"]


def _fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    with open(os.path.join(FIXTURES, name, "scetuning.json")) as fh:
        meta = json.load(fh)
    return meta, load_file(os.path.join(FIXTURES, name, "expected_output.safetensors"))


def _base(meta: dict):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(os.path.join(FIXTURES, meta["base"])).eval()


def _run(model, tensors):
    with torch.no_grad():
        return model(sample=tensors["sample"], timestep=tensors["timestep"],
                     encoder_hidden_states=tensors["encoder_hidden_states"]).sample


@pytest.mark.parametrize("name", NAMES)
def test_swiftlite_loads_ms_swift_scetuning_checkpoint(name):
    from swiftlite import Swift

    meta, tensors = _fixture(name)
    assert (_run(_base(meta), tensors) - tensors["output"]).abs().max() > 1e-3  # the tuners matter
    model = Swift.from_pretrained(_base(meta), os.path.join(FIXTURES, name, "checkpoint"))
    model.eval()
    torch.testing.assert_close(_run(model, tensors), tensors["output"], rtol=1e-5, atol=1e-5)
    # every ms-swift weight landed on a tuner (the same key names), none left at its initial value
    from safetensors.torch import load_file

    saved = load_file(os.path.join(FIXTURES, name, "checkpoint", "default", "adapter_model.safetensors"))
    state = model.state_dict(adapter_name="default")
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_two_nested_adapters_as_ms_swift():
    """alpha then beta on the same resnets: ms-swift nests its patched forwards (beta outermost, so beta
    tunes the skip first); swiftlite must give the same output, and a different one in the other order."""
    from swiftlite import Swift

    meta, tensors = _fixture("scetuning_two")
    assert sorted(meta["configs"]) == ["alpha", "beta"]
    checkpoint = os.path.join(FIXTURES, "scetuning_two", "checkpoint")
    model = Swift.from_pretrained(_base(meta), checkpoint, adapter_name=["alpha", "beta"])
    model.eval()
    torch.testing.assert_close(_run(model, tensors), tensors["output"], rtol=1e-5, atol=1e-5)
    by_default = Swift.from_pretrained(_base(meta), checkpoint)  # swiftlite loads a folder's adapters sorted by name
    by_default.eval()
    torch.testing.assert_close(_run(by_default, tensors), tensors["output"], rtol=1e-5, atol=1e-5)
    swapped = Swift.from_pretrained(_base(meta), checkpoint, adapter_name=["beta", "alpha"])
    swapped.eval()
    assert (_run(swapped, tensors) - tensors["output"]).abs().max() > 1e-3


def test_swiftlite_writes_ms_swift_keys_and_reloads(tmp_path):
    """Saving the loaded adapter again gives ms-swift's key names and a config ms-swift can read."""
    from safetensors.torch import load_file

    from swiftlite import Swift

    meta, tensors = _fixture("scetuning")
    model = Swift.from_pretrained(_base(meta), os.path.join(FIXTURES, "scetuning", "checkpoint"))
    model.save_pretrained(str(tmp_path))
    ours = load_file(os.path.join(tmp_path, "default", "adapter_model.safetensors"))
    theirs = load_file(os.path.join(FIXTURES, "scetuning", "checkpoint", "default", "adapter_model.safetensors"))
    assert set(ours) == set(theirs)
    with open(os.path.join(tmp_path, "default", "adapter_config.json")) as fh:
        config = json.load(fh)
    assert config["swift_type"] == "SCETuning" and config["tuner_mode"] == "decoder"
    again = Swift.from_pretrained(_base(meta), str(tmp_path))
    again.eval()
    torch.testing.assert_close(_run(again, tensors), tensors["output"], rtol=1e-5, atol=1e-5)
