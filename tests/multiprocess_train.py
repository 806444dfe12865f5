"""Two small LoRA trainings with ``swiftlite.train.train``, written to be started by a launcher.

tests/test_multiprocess.py runs it with two processes and compares what they write to ``OUT``
with a one-process run of the same global batch::

    torchrun --standalone --nproc_per_node 2 tests/multiprocess_train.py OUT             # 2 x 4 rows
    accelerate launch --multi_gpu --num_processes 2 tests/multiprocess_train.py OUT      # 2 x 4 rows
    python tests/multiprocess_train.py OUT --batch-size 8 --group 2                      # 1 x 8 rows

The script is what a user writes: it calls ``train`` exactly as in one process. The model is a
real ``transformers`` Llama built from a small config (no download) with two LoRA adapters, of
which only ``default`` is active, so the inactive ``other`` must not reach DDP as a trainable
parameter. ``loss_fn`` reads the model's attributes (``config``, ``active_adapters``), which a DDP
wrapper does not have. Two runs: ``map`` (a ``datasets.Dataset``) and ``step`` (the data as a
function of the micro-batch index).

Each process writes, for each run, ``OUT/<run>/rank{r}.safetensors`` (both adapters' weights and
the logits on a fixed probe) and ``OUT/<run>/rank{r}.json`` (world size, losses); and
``OUT/saves{r}.json``, the runs for which it wrote a checkpoint (``train(save_dir=OUT/<run>/adapter)``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

VOCAB, SEQ, N_SEQUENCES, STEPS = 64, 16, 64, 4


def build_model():
    """The frozen base every run (and the test's reload) starts from, identical for a seed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ)
    return LlamaForCausalLM(config).eval()


def build_swift_model():
    """The base with two LoRA adapters, ``default`` active and ``other`` not (same weights for a seed)."""
    from swiftlite import LoRAConfig, Swift

    model = Swift.prepare_model(build_model(), {
        "default": LoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        "other": LoRAConfig(r=2, target_modules=["q_proj"]),
    })
    model.set_active_adapters("default")
    return model


def adapter_weights(model) -> dict[str, torch.Tensor]:
    """Both adapters' weights, keyed ``<adapter>.<canonical name>``."""
    return {f"{name}.{k}": v.detach().cpu().clone().contiguous()
            for name in ("default", "other") for k, v in model.adapter_parameters(name).items()}


def probe() -> torch.Tensor:
    """Fixed token ids whose logits every run reports after training."""
    return torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(123))


def sequences() -> torch.Tensor:
    return torch.randint(0, VOCAB, (N_SEQUENCES, SEQ), generator=torch.Generator().manual_seed(7))


def step_batch(i: int, rows: int) -> dict[str, torch.Tensor]:
    """Batch ``i`` of a step-indexed data source: ``rows`` sequences starting at row ``i * rows``."""
    x = sequences()
    index = torch.arange(i * rows, (i + 1) * rows) % len(x)
    return {"input_ids": x[index], "labels": x[index]}


def loss_fn(model, batch) -> torch.Tensor:
    # Attribute access that only the real model answers (a DDP wrapper has neither).
    assert model.active_adapters == ["default"], model.active_adapters
    logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, model.config.vocab_size), labels.reshape(-1))


def run(out: str, data: str, batch_size: int, group: int) -> None:
    """Train one model and write this process's results to ``out`` (see the module docstring)."""
    import datasets
    from accelerate.state import PartialState
    from safetensors.torch import save_file

    from swiftlite.train import train

    model = build_swift_model()
    if data == "map":
        x = sequences()
        dataset = datasets.Dataset.from_dict({"input_ids": x.tolist(), "labels": x.tolist()})
    else:
        rows = batch_size // group

        def dataset(i):  # a one-process stand-in for `group` processes concatenates their batches
            parts = [step_batch(group * i + j, rows) for j in range(group)]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    history = train(model, dataset, loss_fn, steps=STEPS, batch_size=batch_size, lr=1e-2,
                    save_dir=os.path.join(out, "adapter"), progress=False, seed=0, max_grad_norm=1.0)

    state = PartialState()
    with torch.no_grad():
        logits = model.eval()(input_ids=probe().to(state.device)).logits.cpu()
    tensors = adapter_weights(model)
    tensors["probe_logits"] = logits.contiguous()
    save_file(tensors, os.path.join(out, f"rank{state.process_index}.safetensors"))
    with open(os.path.join(out, f"rank{state.process_index}.json"), "w") as f:
        json.dump({"world_size": state.num_processes, "device": str(state.device), "loss": history.loss,
                   "other_requires_grad": all(p.requires_grad for p in model.adapter_parameters("other").values())}, f)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per process per step")
    parser.add_argument("--group", type=int, default=1,
                        help="in one process, stand for N processes: step data i is batches N*i .. N*i+N-1")
    args = parser.parse_args(argv)
    from accelerate.state import PartialState

    from swiftlite import SwiftModel

    saves: list[str] = []
    original_save = SwiftModel.save_pretrained

    def counting_save(self, save_directory, *a, **k):  # records the call, then saves for real
        saves.append(os.path.basename(os.path.dirname(save_directory)))
        return original_save(self, save_directory, *a, **k)

    SwiftModel.save_pretrained = counting_save
    try:
        for data in ("map", "step"):
            out = os.path.join(args.out, data)
            os.makedirs(out, exist_ok=True)
            run(out, data, args.batch_size, args.group)
    finally:
        SwiftModel.save_pretrained = original_save
    state = PartialState()
    with open(os.path.join(args.out, f"saves{state.process_index}.json"), "w") as f:
        json.dump(saves, f)  # the runs (map/step) for which this process wrote a checkpoint
    if torch.distributed.is_initialized():  # also a world of one under torchrun
        state.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
