"""swiftlite loads checkpoints written by the real ms-swift and computes what ms-swift computed.

The fixtures (tests/fixtures/ms_swift/, made by its make_fixtures.py with ms-swift 4.6.0, see
VERSIONS.txt) are tiny random transformers models whose weights are saved next to them, one
ms-swift checkpoint each (every trainable weight perturbed, so nothing is at its initial value),
and ms-swift's output on a stored input. Here the base model is rebuilt from its saved weights with
this venv's transformers, the checkpoint loaded with `swiftlite.Swift.from_pretrained`, and the
outputs compared.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "ms_swift")
NAMES = sorted(d for d in os.listdir(FIXTURES) if os.path.isfile(os.path.join(FIXTURES, d, "fixture.json")))


def _fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    with open(os.path.join(FIXTURES, name, "fixture.json")) as fh:
        meta = json.load(fh)
    return meta, load_file(os.path.join(FIXTURES, name, "expected_output.safetensors"))


def _base_model(meta: dict) -> torch.nn.Module:
    import transformers

    cls = getattr(transformers, meta["model_class"])
    model = cls.from_pretrained(os.path.join(FIXTURES, meta["base"]), attn_implementation=meta["attn_implementation"])
    return model.eval()


def test_fixture_folder_is_complete_and_small():
    assert {"lora", "lora_dora", "adapter", "prompt", "side", "part", "llamapro", "two_adapters",
            "extra_state_keys"} <= set(NAMES)
    total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(FIXTURES) for f in files)
    assert total < 2 * 1024 * 1024, f"fixtures take {total} bytes; keep them under 2 MB"


@pytest.mark.parametrize("name", NAMES)
def test_fixture_output_differs_from_base(name):
    """Each fixture's adapter changes the output, so matching it below is a real check."""
    meta, tensors = _fixture(name)
    with torch.no_grad():
        base_out = getattr(_base_model(meta)(input_ids=tensors["input_ids"]), meta["output_field"])
    same_shape = base_out.shape == tensors["output"].shape  # Prompt adds tokens: (B, T + p, d)
    assert not same_shape or (base_out - tensors["output"]).abs().max() > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_swiftlite_loads_ms_swift_checkpoint(name):
    from swiftlite import Swift

    meta, tensors = _fixture(name)
    model = Swift.from_pretrained(_base_model(meta), os.path.join(FIXTURES, name, "checkpoint"))
    model.eval()
    with torch.no_grad():
        out = getattr(model(input_ids=tensors["input_ids"]), meta["output_field"])
    torch.testing.assert_close(out, tensors["output"], rtol=1e-5, atol=1e-5)
