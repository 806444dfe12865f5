"""Tests for swiftlite.train: the single accelerate training loop (tiny CPU tasks)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from swiftlite.train import History, lr_lambda, train

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def blobs(n: int = 256, seed: int = 0) -> torch.utils.data.TensorDataset:
    """Two Gaussian blobs in 2-D, labels 0/1: a task a tiny MLP learns in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + (2.0 * y[:, None] - 1.0) * 1.5
    return torch.utils.data.TensorDataset(x, y)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))


def ce_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def mse_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x).squeeze(-1), y)


def test_loss_goes_down_on_tiny_classification():
    model = mlp()
    history = train(model, blobs(), ce_loss, steps=60, batch_size=32, lr=1e-2, progress=False)
    assert isinstance(history, History)
    assert history.steps == 60 and len(history.loss) == 60 and len(history.lr) == 60
    first, last = sum(history.loss[:5]) / 5, sum(history.loss[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    x, y = blobs(n=512, seed=1).tensors  # held-out data from the same distribution
    accuracy = (model(x).argmax(-1) == y).float().mean().item()
    assert accuracy > 0.9
    assert history.seconds > 0


def test_grad_accumulation_matches_bigger_batch():
    """4 micro-batches of 8 (no shuffle, mean loss) give the same update as one batch of 32."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, generator=g)
    data = torch.utils.data.TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5]))
    calls = {"n": 0}

    def counting_loss(model, batch):
        calls["n"] += 1
        return mse_loss(model, batch)

    kwargs = dict(steps=3, lr=0.1, optimizer=torch.optim.SGD, lr_schedule="constant", max_grad_norm=None,
                  shuffle=False, progress=False)
    torch.manual_seed(0)
    small = nn.Linear(3, 1)
    big = nn.Linear(3, 1)
    big.load_state_dict(small.state_dict())
    h_small = train(small, data, counting_loss, batch_size=8, grad_accum=4, **kwargs)
    assert calls["n"] == 12  # 3 optimizer steps x 4 micro-batches
    h_big = train(big, data, mse_loss, batch_size=32, grad_accum=1, **kwargs)
    assert h_small.steps == h_big.steps == 3 and len(h_small.loss) == 3
    for a, b in zip(small.parameters(), big.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(h_small.loss), torch.tensor(h_big.loss), atol=1e-5, rtol=1e-5)
    assert small.weight.ne(big.weight.new_zeros(())).any()  # it really trained


def test_only_trainable_params_are_saved(tmp_path):
    from safetensors.torch import load_file

    model = mlp()
    model[0].requires_grad_(False)  # frozen "backbone"
    frozen_before = model[0].weight.detach().clone()
    train(model, blobs(), ce_loss, steps=6, batch_size=16, save_dir=tmp_path, save_every=2, progress=False)
    saved = load_file(tmp_path / "trainable.safetensors")
    assert set(saved) == {"2.weight", "2.bias"}
    torch.testing.assert_close(saved["2.weight"], model[2].weight.detach())
    torch.testing.assert_close(model[0].weight, frozen_before)  # frozen weights untouched
    assert os.listdir(tmp_path) == ["trainable.safetensors"]  # the atomic write left no temp file


def test_swift_model_is_saved_with_save_pretrained(tmp_path):
    """A model with ``adapters`` and ``save_pretrained`` (the SwiftModel protocol) writes through it."""

    class AdapterHolder(nn.Module):
        def __init__(self):
            super().__init__()
            self.base = nn.Linear(2, 2).requires_grad_(False)
            self.delta = nn.Linear(2, 2)
            self.adapters = {"default": self.delta}
            self.saved_to = []

        def forward(self, x):
            return self.base(x) + self.delta(x)

        def save_pretrained(self, save_dir):
            self.saved_to.append(str(save_dir))

    model = AdapterHolder()
    train(model, blobs(), ce_loss, steps=4, batch_size=16, save_dir=tmp_path, save_every=2, progress=False)
    assert model.saved_to == [str(tmp_path)] * 2  # step 2, then the end (step 4)
    assert not (tmp_path / "trainable.safetensors").exists()


def test_eval_fn_called_at_the_right_steps():
    seen = []

    def eval_fn(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"val": torch.tensor(1.5)}

    model = mlp()
    history = train(model, blobs(), ce_loss, steps=10, batch_size=16, eval_fn=eval_fn, eval_every=3, progress=False)
    assert [s for s, _ in history.evals] == [3, 6, 9, 10]
    assert all(m == {"val": 1.5} and isinstance(m["val"], float) for _, m in history.evals)
    assert seen == [(False, False)] * 4  # eval mode, no grad
    assert model.training  # back to train mode afterwards


def test_deterministic_by_seed():
    def run(seed):
        model = mlp(seed=1)
        h = train(model, blobs(), ce_loss, steps=8, batch_size=16, seed=seed, progress=False)
        return h.loss, [p.detach().clone() for p in model.parameters()]

    loss_a, params_a = run(0)
    loss_b, params_b = run(0)
    loss_c, _ = run(1)
    assert loss_a == loss_b
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)
    assert loss_a != loss_c  # a different seed shuffles differently


@dataclass
class Output:
    loss: torch.Tensor
    logits: torch.Tensor


class HFStyleClassifier(nn.Module):
    """forward(**batch) -> object with .loss, as transformers models do."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x, labels):
        logits = self.net(x)
        return Output(loss=nn.functional.cross_entropy(logits, labels), logits=logits)


def test_works_with_datasets_dataset_and_default_loss():
    import datasets

    x, y = blobs().tensors
    ds = datasets.Dataset.from_dict({"x": x.tolist(), "labels": y.tolist()})
    assert ds.format["type"] is None
    torch.manual_seed(0)
    model = HFStyleClassifier()
    history = train(model, ds, None, steps=40, batch_size=32, lr=1e-2, progress=False)
    assert len(history.loss) == 40
    assert sum(history.loss[-5:]) / 5 < 0.5 * sum(history.loss[:5]) / 5


def test_callable_dataset_called_once_per_micro_batch():
    indices = []
    g = torch.Generator().manual_seed(0)

    def batch_at(i):
        indices.append(i)
        x = torch.randn(16, 2, generator=g)
        return x, x.sum(-1)

    history = train(nn.Linear(2, 1), batch_at, mse_loss, steps=5, grad_accum=2, progress=True)
    assert indices == list(range(10))
    assert history.steps == 5


def test_param_groups_from_model_are_used():
    """create_optimizer_param_groups decides the lr per group (here: lr 0 freezes `a` in effect)."""

    class TwoGroups(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, x):
            return self.b(self.a(x))

        def create_optimizer_param_groups(self, lr, weight_decay):
            return [{"params": list(self.a.parameters()), "lr": 0.0},
                    {"params": list(self.b.parameters()), "lr": lr, "weight_decay": weight_decay}]

    torch.manual_seed(0)
    model = TwoGroups()
    a_before, b_before = model.a.weight.detach().clone(), model.b.weight.detach().clone()
    train(model, blobs(), ce_loss, steps=5, batch_size=16, lr=1e-2, progress=False)
    assert torch.equal(model.a.weight, a_before)
    assert not torch.equal(model.b.weight, b_before)


def test_ema_weights_are_copied_in_at_the_end():
    """Constant gradient c and SGD: w_t = w_0 - t·η·c, so the EMA has a closed form to compare with."""

    class Vector(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

    c, lr, beta, steps = torch.tensor([1.0, -2.0, 0.5]), 0.1, 0.8, 6
    model = Vector()
    history = train(model, lambda i: c, lambda m, batch: (m.w * batch).sum(), steps=steps, lr=lr,
                    optimizer=torch.optim.SGD, lr_schedule="constant", max_grad_norm=None, ema=beta,
                    progress=False)
    ema = torch.zeros(3)
    for t in range(1, steps + 1):
        ema = beta * ema + (1 - beta) * (-t * lr * c)  # θ_ema = β θ_ema + (1-β) θ_t
    torch.testing.assert_close(model.w.detach(), ema)
    assert history.ema_decay == beta


def test_lr_schedule_warmup_then_cosine():
    history = train(nn.Linear(2, 1), lambda i: torch.randn(4, 2), lambda m, b: m(b).pow(2).mean(), steps=20,
                    lr=1.0, warmup_steps=4, progress=False)
    assert history.lr[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert history.lr[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(history.lr[4:], history.lr[5:]))  # cosine decays monotonically
    assert history.lr[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert lr_lambda("linear", 10)(5) == pytest.approx(0.5)
    assert lr_lambda("constant", 10, 2)(7) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_lambda("step", 10)


def test_grad_norm_is_clipped():
    """With max_grad_norm the update of SGD (lr 1) has norm <= the clip value."""
    model = nn.Linear(2, 1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    history = train(model, lambda i: torch.full((4, 2), 100.0), lambda m, b: m(b).sum(), steps=1, lr=1.0,
                    optimizer=torch.optim.SGD, lr_schedule="constant", max_grad_norm=0.5, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert history.grad_norm[0] > 100  # the raw norm was large ...
    assert (after - before).norm().item() == pytest.approx(0.5, rel=1e-4)  # ... the step was clipped


def test_history_plot():
    import matplotlib

    matplotlib.use("Agg")
    h = History(loss=[3.0, 2.0, 2.5, 1.0])
    ax = h.plot()
    assert len(ax.lines) == 2  # raw + smoothed
    assert h.smoothed_loss()[0] == pytest.approx(3.0)  # debiased: starts at the first value


def test_clear_errors():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        train(frozen, blobs(), ce_loss, steps=1, progress=False)
    with pytest.raises(TypeError, match="dict batches"):
        train(mlp(), blobs(), None, steps=1, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        train(mlp(), blobs(), lambda m, b: m(b[0]), steps=1, progress=False)


def test_mixed_precision_bf16_on_cpu_then_fp32_again():
    model = nn.Linear(4, 1)
    batches, loss = (lambda i: torch.randn(8, 4)), (lambda m, b: m(b).pow(2).mean())
    h = train(model, batches, loss, steps=3, mixed_precision="bf16", progress=False)
    assert all(math.isfinite(v) for v in h.loss)
    assert model.forward.__func__ is nn.Linear.forward  # the autocast wrapper was removed at the end
    assert model.weight.dtype == torch.float32  # weights stay fp32; only compute is bf16
    h = train(model, batches, loss, steps=3, mixed_precision="no", progress=False)  # process state reset
    assert len(h.loss) == 3


def test_swift_model_checkpoint_holds_only_adapter_weights(tmp_path):
    """With a real SwiftModel (LoRA on an MLP) the checkpoint is the adapter, not the backbone."""
    from safetensors.torch import load_file

    from swiftlite import LoRAConfig, Swift

    model = Swift.prepare_model(mlp(), LoRAConfig(r=2, target_modules=["0", "2"]))
    history = train(model, blobs(), ce_loss, steps=30, batch_size=32, lr=1e-2, save_dir=tmp_path, progress=False)
    assert sum(history.loss[-5:]) < sum(history.loss[:5])
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert "adapter_model.safetensors" in files and "trainable.safetensors" not in files
    keys = set(load_file(next(tmp_path.rglob("adapter_model.safetensors"))))
    assert keys and all("lora_" in k for k in keys), keys


def test_inactive_adapter_is_frozen_while_training_then_given_back():
    """An inactive adapter gets no gradient; train() freezes it (DDP would wait for its gradient)."""
    from swiftlite import LoRAConfig, Swift

    model = Swift.prepare_model(mlp(), {"a": LoRAConfig(r=2, target_modules=["0", "2"]),
                                        "b": LoRAConfig(r=2, target_modules=["0"])})
    model.set_active_adapters("a")
    b_before = {k: v.detach().clone() for k, v in model.adapter_parameters("b").items()}
    a_before = {k: v.detach().clone() for k, v in model.adapter_parameters("a").items()}
    seen = []

    def hook(step, m, optimizer):
        seen.append(([p.requires_grad for p in m.adapter_parameters("b").values()],
                     {id(p) for g in optimizer.param_groups for p in g["params"]}))

    train(model, blobs(), ce_loss, steps=3, batch_size=32, lr=1e-2, progress=False, on_step_begin=hook)
    b_ids = {id(p) for p in model.adapter_parameters("b").values()}
    assert len(seen) == 3 and all(not any(flags) and not ids & b_ids for flags, ids in seen)
    assert all(p.requires_grad for p in model.adapter_parameters("b").values())  # given back
    assert all(torch.equal(v, b_before[k]) for k, v in model.adapter_parameters("b").items())
    assert any(not torch.equal(v, a_before[k]) for k, v in model.adapter_parameters("a").items())
    assert model.active_adapters == ["a"]


def test_requires_grad_given_back_when_training_fails():
    from swiftlite import LoRAConfig, Swift

    model = Swift.prepare_model(mlp(), {"a": LoRAConfig(r=2, target_modules=["0"]),
                                        "b": LoRAConfig(r=2, target_modules=["2"])})
    model.set_active_adapters("a")

    def broken(model, batch):
        raise KeyError("no such column")

    with pytest.raises(KeyError):
        train(model, blobs(), broken, steps=2, batch_size=32, progress=False)
    assert all(p.requires_grad for p in model.adapter_parameters("b").values())


def test_warns_when_a_multi_process_launch_is_alone(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` sets MASTER_ADDR, then starts one plain process."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.warns(RuntimeWarning, match="world size 1.*torchrun --standalone --nproc_per_node N"):
        history = train(mlp(), blobs(), ce_loss, steps=2, batch_size=32, progress=False)
    assert history.steps == 2  # it still trains, in this one process


def test_no_launch_warning_in_a_plain_process(monkeypatch):
    import warnings

    for key in ("WORLD_SIZE", "MASTER_ADDR", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(mlp(), blobs(), ce_loss, steps=2, batch_size=32, progress=False)
    assert not [w for w in caught if "world size 1" in str(w.message)]


def test_drop_last_counts_every_process():
    """With N processes a step needs N full batches. Accelerate gives process r the batches
    r, N + r, ... of the loader; with too few rows for N full batches the last incomplete one must
    not be dropped (Accelerate's even_batches then fills every shard by wrapping around), or some
    shards get no batch at all."""
    from accelerate.data_loader import BatchSamplerShard

    from swiftlite.train import _make_dataloader

    for rows, n_proc in [(40, 1), (40, 2), (40, 3), (20, 2), (5, 2)]:  # 40 rows: 2 batches of 16 and one of 8
        loader = _make_dataloader(blobs(n=rows), 16, True, None, 0, num_processes=n_proc)
        assert loader.drop_last == (rows >= 16 * n_proc), (rows, n_proc)
        for rank in range(n_proc):
            shard = list(BatchSamplerShard(loader.batch_sampler, num_processes=n_proc, process_index=rank))
            assert shard and all(len(b) == 16 for b in shard), (rows, n_proc, rank, shard)
