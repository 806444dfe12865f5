"""Res-Tuning-Bypass: training memory and multi-task inference time, as ratios measured in one run.

Targets (issue 8, from the paper's −49.7 % memory and −80.9 % multi-task time):

* Bypass peak training memory <= 0.5 × Res-Tuning's, same backbone, same batch;
* K = 5 tasks through one shared backbone forward (`restuning.multi_task_forward`) <= 0.33 × the time
  of 5 full forwards (one adapter active at a time).

Compared on one backbone and one batch (`swiftlite/vision/multitask.py` holds the code):

* Res-Tuning: a Res-Adapter (m = 32) beside every attention and MLP module (`UTuningConfig`),
  gradients through the frozen backbone;
* Res-Tuning-Bypass: `ResTuningConfig(use_bypass=True)`, lateral + vertical Res-Adapters (m = 32) per
  block: the same number of trainable weights;
* the Bypass network with `use_bypass=False` (probes not detached), and full fine-tuning.
  Every model also trains its new classifier head.

Memory: `swiftlite.bench.measure` — on CUDA the allocator's peak over the timed steps, on a CPU
params + grads + AdamW state + the tensors autograd saves for backward (see `swiftlite/bench.py`).

    HF_HUB_OFFLINE=1 python benchmarks/restuning_bypass.py                      # vit-tiny, CPU, batch 64
    HF_HUB_OFFLINE=1 python benchmarks/restuning_bypass.py --backbone vit-b16-shape --device cuda --batch 64

`vit-tiny` is the zoo's pretrained ViT (hidden 64, 4 blocks, 65 tokens); `vit-b16-shape` a randomly
initialised ViT with ViT-B/16's shape (hidden 768, 12 blocks, 197 tokens), the paper's size (memory
and time do not depend on the weights' values).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from swiftlite.vision import multitask

MEMORY_TARGET, TIME_TARGET = 0.5, 0.33


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit-tiny", choices=["vit-tiny", "vit-b16-shape"])
    parser.add_argument("--batch", type=int, default=64, help="batch size for both measurements")
    parser.add_argument("--k", type=int, default=5, help="number of tasks sharing the backbone")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed train steps per model (memory part)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds of the multi-task comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    rows = multitask.bypass_memory_comparison(args.backbone, batch_size=args.batch, device=args.device,
                                              steps=args.steps, warmup=2)
    multi = multitask.multi_task_timing(args.backbone, k=args.k, batch_size=args.batch, device=args.device,
                                        rounds=args.rounds)
    by_name = {r["name"]: r for r in rows}
    memory_ratio = by_name[multitask.BYPASS]["peak_memory_ratio_to_res_tuning"]
    machine = platform.processor() or platform.machine()
    setup = (f"{args.backbone}, batch {args.batch}, device {args.device} ({machine}), "
             f"threads {args.threads}, torch {torch.__version__}, memory method {rows[0]['memory_method']}")
    print(f"# Res-Tuning-Bypass benchmark: {setup}\n")
    print("| model | trainable params | peak train memory (MiB) | memory / Res-Tuning | step time (ms) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['trainable_params']:,} | {r['peak_memory_bytes'] / 2**20:.2f} | "
              f"{r['peak_memory_ratio_to_res_tuning']:.3f} | {r['step_time_s'] * 1e3:.1f} |")
    print(f"\nmulti-task inference, K = {args.k}, batch {args.batch}: {args.k} separate forwards "
          f"{multi['separate_forwards_s'] * 1e3:.2f} ms, one shared forward {multi['shared_forward_s'] * 1e3:.2f} ms "
          f"(medians over {args.rounds} rounds); ratio {multi['time_ratio']:.3f} (IQR "
          f"{multi['time_ratio_iqr'][0]:.3f}–{multi['time_ratio_iqr'][1]:.3f}); largest logit difference "
          f"{multi['max_logit_difference']:.1e}")
    verdict = {"bypass_memory_ratio": memory_ratio, "memory_target": MEMORY_TARGET,
               "memory_target_met": memory_ratio <= MEMORY_TARGET, "multi_task_time_ratio": multi["time_ratio"],
               "time_target": TIME_TARGET, "time_target_met": multi["time_ratio"] <= TIME_TARGET}
    print(f"\nBypass memory / Res-Tuning = {memory_ratio:.3f} (target <= {MEMORY_TARGET}: "
          f"{'met' if verdict['memory_target_met'] else 'NOT met'}); shared / separate time = "
          f"{multi['time_ratio']:.3f} (target <= {TIME_TARGET}: {'met' if verdict['time_target_met'] else 'NOT met'}); "
          f"{time.perf_counter() - start:.0f} s")
    result = {"setup": setup, "rows": rows, "multi_task": multi, **verdict}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
