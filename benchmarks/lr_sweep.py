"""Learning-rate sweep behind tutorial 02's `LR` table (the methods whose lr was tuned, not set by rule).

For each tuner and each learning rate of a grid: take a fresh `zoo.load("llama-tiny")`, prepare it
with the tuner's config (the same configs as `tutorials/02_tuner_benchmark.py`), train `--steps`
SFT steps (AdamW, cosine schedule, no warm-up, batch 16, seed 0: the tutorial's settings, only
shorter) on `instruction_pairs(2000, seed=0)`, and score the held-out SFT loss on a *validation*
split, `instruction_pairs(200, seed=2)` — not the tutorial's evaluation set (seed 1), so the
choice of lr does not peek at the numbers the tutorial reports. Prints one table (rows: tuners,
columns: lr, cells: validation loss) and the best lr per tuner; `--json` also writes the rows.

    HF_HUB_OFFLINE=1 python benchmarks/lr_sweep.py                      # full grid, 40 steps
    HF_HUB_OFFLINE=1 python benchmarks/lr_sweep.py --tuners IA3 --lrs 3e-2 1e-1 --steps 5   # a smoke run

Full grid: 6 tuners x 6 learning rates x 40 steps on one CPU thread. A best lr at the edge of the
grid (1e-1 for several vector methods) means the grid may be too narrow there; the tutorial says so.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

import swiftlite.zoo as zoo
from swiftlite import Swift
from swiftlite import tuners as T
from swiftlite.data import instruction_pairs
from swiftlite.llm import SFTCollator, build_sft_dataset, evaluate_loss, sft_loss
from swiftlite.train import train

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GRID = [1e-3, 3e-3, 5e-3, 1e-2, 3e-2, 1e-1]


def configs(hidden_size: int) -> dict:
    """The tuned methods of tutorial 02, with the tutorial's configs."""
    return {
        "LoRA+": T.LoRAConfig(r=8, lora_alpha=32, target_modules=ALL_LINEAR, lorap_lr_ratio=16.0),
        "Prompt": T.PromptConfig(dim=hidden_size, target_modules=r"model\.layers\.\d+", prompt_length=10,
                                 extract_embedding=True),
        "Prefix": T.PrefixConfig(target_modules=r"model\.layers\.\d+\.self_attn", num_virtual_tokens=10),
        "IA3": T.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
        "BitFit": T.BitFitConfig(target_modules=ALL_LINEAR),
        "LN tuning": T.BitFitConfig(mode="norm"),
    }


def sweep(tuners: list[str], lrs: list[float], steps: int, n_train: int = 2000, n_val: int = 200,
          batch_size: int = 16, seed: int = 0) -> list[dict]:
    model, tokenizer = zoo.load("llama-tiny")
    train_ds = build_sft_dataset(instruction_pairs(n_train, seed=0), tokenizer)
    val_ds = build_sft_dataset(instruction_pairs(n_val, seed=2), tokenizer)  # validation: not the eval set (seed 1)
    collate = SFTCollator(pad_token_id=tokenizer.pad_token_id)
    all_configs = configs(model.config.hidden_size)
    unknown = [t for t in tuners if t not in all_configs]
    if unknown:
        raise SystemExit(f"lr_sweep: unknown tuners {unknown}; choose from {list(all_configs)}")
    rows = []
    for name in tuners:
        for lr in lrs:
            torch.manual_seed(seed)
            tuned = Swift.prepare_model(zoo.load("llama-tiny")[0], all_configs[name])
            start = time.perf_counter()
            train(tuned, train_ds, sft_loss, steps=steps, batch_size=batch_size, lr=lr, collate_fn=collate,
                  seed=seed, progress=False, lr_schedule="cosine")
            loss = evaluate_loss(tuned, val_ds, collate_fn=collate)
            rows.append({"tuner": name, "lr": lr, "val_loss": loss, "seconds": time.perf_counter() - start})
            print(f"{name:10s} lr {lr:<7g} validation loss {loss:.3f}  ({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def best_per_tuner(rows: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for row in rows:
        if math.isfinite(row["val_loss"]) and (row["tuner"] not in best or row["val_loss"] < best[row["tuner"]]["val_loss"]):
            best[row["tuner"]] = row
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuners", nargs="+", default=list(configs(128)))
    parser.add_argument("--lrs", nargs="+", type=float, default=GRID)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = sweep(args.tuners, args.lrs, args.steps)
    lrs = sorted({r["lr"] for r in rows})
    print("\n| tuner | " + " | ".join(f"{lr:g}" for lr in lrs) + " | best |")
    print("|---|" + "---|" * (len(lrs) + 1))
    best = best_per_tuner(rows)
    for name in dict.fromkeys(r["tuner"] for r in rows):
        cells = {r["lr"]: r["val_loss"] for r in rows if r["tuner"] == name}
        edge = " (edge of grid)" if best[name]["lr"] in (lrs[0], lrs[-1]) and len(lrs) > 1 else ""
        print(f"| {name} | " + " | ".join(f"{cells[lr]:.3f}" if lr in cells else "" for lr in lrs)
              + f" | {best[name]['lr']:g}{edge} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
