"""Tests for swiftlite.bench: measured parameters, time, throughput and training memory (tiny, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from swiftlite.bench import compare, count_parameters, measure, time_forward, to_markdown


def mlp(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))


def batch_fn(batch_size: int):
    def make():
        return torch.randn(batch_size, 16), torch.randint(0, 4, (batch_size,))

    return make


def ce_loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def test_count_parameters_counts_tied_weights_once():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied
    model[0].bias.requires_grad_(False)
    assert count_parameters(model) == (9 + 3, 9 + 3 + 3)


def test_measure_figures_are_positive_and_consistent():
    model = mlp()
    model[0].requires_grad_(False)
    row = measure(model, batch_fn(8), ce_loss, name="head", steps=3, warmup=1)
    expected_keys = {"name", "trainable_params", "total_params", "trainable_percent", "step_time_s",
                     "step_time_iqr_s", "throughput", "peak_memory_bytes", "memory_parts_bytes", "memory_method",
                     "device"}
    assert set(row) == expected_keys
    trainable, total = count_parameters(model)
    assert (row["trainable_params"], row["total_params"]) == (trainable, total)
    assert 0 < row["trainable_params"] < row["total_params"]
    assert row["trainable_percent"] == pytest.approx(100 * trainable / total)
    assert row["step_time_s"] > 0 and row["step_time_iqr_s"] >= 0
    assert row["throughput"] == pytest.approx(8 / row["step_time_s"])
    assert row["peak_memory_bytes"] > 0
    assert row["memory_method"] == "saved-for-backward+params+grads+optimizer-state"
    assert row["device"] == "cpu" and row["name"] == "head"


def test_peak_memory_grows_with_batch():
    model = mlp()
    small = measure(model, batch_fn(8), ce_loss, steps=2, warmup=1)
    big = measure(model, batch_fn(64), ce_loss, steps=2, warmup=1)
    assert big["peak_memory_bytes"] > small["peak_memory_bytes"]


def test_cpu_memory_matches_hand_count_for_one_linear():
    """Linear(i, o) + sum loss + AdamW: saved = input x; params, grads, exp_avg, exp_avg_sq = 4·P floats;
    plus AdamW's two scalar `step` tensors."""
    i, o, batch = 32, 8, 16
    model = nn.Linear(i, o)
    row = measure(model, lambda: torch.randn(batch, i), lambda m, x: m(x).sum(), steps=1, warmup=1)
    n_params = i * o + o
    step_bytes = 2 * torch.zeros(()).element_size()  # AdamW keeps state["step"] as a float32 scalar tensor
    assert row["peak_memory_bytes"] == 4 * batch * i + 4 * 4 * n_params + step_bytes
    assert row["memory_parts_bytes"] == {"parameters": 4 * n_params, "saved for backward": 4 * batch * i,
                                         "gradients": 4 * n_params, "optimizer state": 2 * 4 * n_params + step_bytes}


def test_frozen_backbone_saves_memory():
    """Freezing the first layers means no activations are saved there and no grads/state exist."""
    full = measure(mlp(256), batch_fn(64), ce_loss, steps=2, warmup=1)
    model = mlp(256)
    model[0].requires_grad_(False)
    model[2].requires_grad_(False)
    head_only = measure(model, batch_fn(64), ce_loss, steps=2, warmup=1)
    assert head_only["peak_memory_bytes"] < full["peak_memory_bytes"]


def test_measure_restores_weights_and_mode():
    model = mlp()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, batch_fn(8), ce_loss, steps=2, warmup=1, optimizer="sgd")
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_measure_default_loss_with_dict_batch():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 1)

        def forward(self, x, y):
            out = nn.functional.mse_loss(self.net(x).squeeze(-1), y)
            return type("Output", (), {"loss": out})()

    row = measure(WithLoss(), lambda: {"x": torch.randn(5, 4), "y": torch.randn(5)}, steps=2, warmup=0)
    assert row["throughput"] == pytest.approx(5 / row["step_time_s"])  # batch size 5 found in the dict


def test_time_forward_positive_and_mode_restored():
    model = mlp()
    seconds = time_forward(model, lambda: torch.randn(8, 16), steps=3, warmup=1)
    assert seconds > 0
    assert model.training


def test_compare_ratios():
    rows = [
        {"name": "full", "trainable_params": 1000, "total_params": 1000, "step_time_s": 2.0,
         "throughput": 10.0, "peak_memory_bytes": 400},
        {"name": "lora", "trainable_params": 10, "total_params": 1010, "step_time_s": 1.0,
         "throughput": 20.0, "peak_memory_bytes": 100},
    ]
    out = compare(rows, baseline="full")
    assert out[0]["peak_memory_bytes_ratio"] == 1.0
    assert out[1]["trainable_params_ratio"] == pytest.approx(0.01)
    assert out[1]["total_params_ratio"] == pytest.approx(1.01)
    assert out[1]["step_time_s_ratio"] == pytest.approx(0.5)
    assert out[1]["throughput_ratio"] == pytest.approx(2.0)
    assert out[1]["peak_memory_bytes_ratio"] == pytest.approx(0.25)
    assert "trainable_percent_ratio" not in out[1]  # the baseline row has no such metric
    assert "step_time_s_ratio" not in rows[1]  # the input rows are not modified
    zero = compare([{"name": "a", "x": 0}, {"name": "b", "x": 3}], baseline="a", metrics=["x"])
    assert math.isnan(zero[1]["x_ratio"])
    with pytest.raises(KeyError, match="full"):
        compare(rows[1:], baseline="full")


def test_to_markdown():
    rows = [{"name": "full", "trainable_params": 1234567, "peak_memory_bytes": 3 * 2**20, "step_time_s": 0.012345},
            {"name": "lo|ra", "trainable_params": 10, "peak_memory_bytes": 2**19, "step_time_s": 0.5}]
    table = to_markdown(rows)
    lines = table.splitlines()
    assert lines[0] == "| name | trainable_params | peak_memory_bytes | step_time_s |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| full | 1,234,567 | 3.00 MiB | 0.01235 |"
    assert lines[3] == "| lo\\|ra | 10 | 0.50 MiB | 0.5 |"
    assert to_markdown(rows, columns=["name"]).splitlines()[2] == "| full |"
