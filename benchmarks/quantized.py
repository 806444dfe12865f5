"""LoRA on a quantized base (QLoRA and friends) vs LoRA on the float32 base, on this CPU, ratios in one run.

    HF_HUB_OFFLINE=1 python benchmarks/quantized.py [--quick] [--steps 120] [--seeds 0 1 2] [--out FILE.json]

Two models:
- llama-tiny (pretrained, `swiftlite.zoo`), LoRA r=8, alpha=32 on every linear layer of the blocks (ms-swift's
  QLoRA recipe), fine-tuned on instruction pairs for the same steps / lr / data order with each base, >= 3 seeds:
  held-out SFT loss and exact match, plus the costs below.
- a wider randomly initialised LLaMA (hidden 512, 4 layers), where tiny layers hide the effect: costs only.
Costs: weight bytes of the base (all weights; linear layers of the blocks alone), counted training memory
(weights as stored + saved for backward + gradients + AdamW state, `swiftlite.bench`), median train-step time.
One torch thread; the machine is shared, so times are ratios within this run. Not a test: it prints the tables
for README.md ("Tuning on a quantized base").
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import torch

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def wide_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=512, intermediate_size=1536,
                                        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8,
                                        max_position_embeddings=512, tie_word_embeddings=True)).eval()


def table(rows: list[dict], quality: bool) -> str:
    base = rows[0]
    head = ["base", "bits", "base weights (ratio)", "block linear weights (ratio)", "train memory (ratio)",
            "step time (ratio)"]
    if quality:
        head += ["held-out loss (before → after)", "exact match"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], str(r["quant_bits"]),
                 f"{r['base_weight_bytes'] / 2**20:.2f} MiB ({r['base_weight_bytes'] / base['base_weight_bytes']:.2f})",
                 f"{r['linear_weight_bytes'] / 2**20:.2f} MiB ({r['linear_weight_bytes'] / base['linear_weight_bytes']:.2f})",
                 f"{r['train_memory_bytes'] / 2**20:.2f} MiB ({r['train_memory_bytes'] / base['train_memory_bytes']:.2f})",
                 f"{r['step_time_s'] * 1e3:.0f} ms ({r['step_time_s'] / base['step_time_s']:.2f})"]
        if quality:
            cells += [f"{r['eval_loss_init']:.3f} → {r['eval_loss']:.3f} ± {r['eval_loss_std']:.3f}",
                      f"{r['exact_match']:.3f} ± {r['exact_match_std']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (quick zoo model, 3 steps)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    opts = parser.parse_args()
    if opts.quick:
        os.environ["SWIFTLITE_QUICK"] = "1"
    torch.set_num_threads(1)

    import swiftlite.zoo as zoo
    from swiftlite.data import instruction_pairs
    from swiftlite.llm import SFTCollator, build_sft_dataset
    from swiftlite.llm.quantized import VARIANTS, compare_quantized
    from swiftlite.llm.sft import exact_match
    from swiftlite.tuners import LoRAConfig

    steps = 3 if opts.quick else opts.steps
    n_train, n_eval, n_em = (48, 16, 8) if opts.quick else (2000, 200, 100)
    lora = LoRAConfig(r=8, lora_alpha=32, target_modules=ALL_LINEAR)
    _, tokenizer = zoo.load("llama-tiny")
    train_ds = build_sft_dataset(instruction_pairs(n_train, seed=0), tokenizer)
    eval_pairs = instruction_pairs(n_eval, seed=1)
    eval_ds = build_sft_dataset(eval_pairs, tokenizer)
    em_pairs = eval_pairs.select(range(n_em))
    max_answer = max(len(tokenizer(o)["input_ids"]) for o in em_pairs["output"]) + 2
    collate = SFTCollator(pad_token_id=tokenizer.pad_token_id)

    def accuracy(model, name):
        return {"exact_match": exact_match(model, tokenizer, em_pairs, max_new_tokens=max_answer)}

    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")  # LLM.int8, at every call
    started = time.perf_counter()
    tiny = compare_quantized(lambda: zoo.load("llama-tiny")[0], VARIANTS, lora, train_ds, eval_ds, steps=steps,
                             lr=5e-3, batch_size=16, seeds=opts.seeds, collate_fn=collate, eval_fn=accuracy,
                             measure_steps=2 if opts.quick else 5, measure_rounds=1 if opts.quick else 2)
    wide = compare_quantized(lambda: wide_llama(tokenizer.vocab_size), VARIANTS, lora, train_ds,
                             eval_ds.select(range(min(16, len(eval_ds)))), steps=1, lr=5e-3, batch_size=16,
                             seeds=[0], collate_fn=collate, measure_steps=2 if opts.quick else 5,
                             measure_rounds=1 if opts.quick else 3)
    print(f"\nllama-tiny, LoRA r=8 alpha=32 on all block linears, {steps} steps, seeds {opts.seeds}:\n")
    print(table(tiny, quality=True))
    print("\nwide random LLaMA (hidden 512, intermediate 1536, 4 layers), costs only:\n")
    print(table(wide, quality=False))
    print(f"\n{time.perf_counter() - started:.0f} s on {torch.get_num_threads()} thread(s); torch {torch.__version__}")
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump({"llama-tiny": tiny, "wide": wide, "steps": steps, "seeds": opts.seeds}, f, indent=1)


if __name__ == "__main__":
    main()
