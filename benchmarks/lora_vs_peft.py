"""swiftlite LoRA vs PEFT LoRA on the same tiny LLaMA: train-step time and merged-inference time.

    HF_HUB_OFFLINE=1 python benchmarks/lora_vs_peft.py [--threads 1] [--rounds 12] [--device cpu]

Both models start from the same randomly initialised LlamaForCausalLM and get LoRA r=8 on every
linear layer of attention and MLP. Timings are interleaved (A, B, B, A, ...) round by round, so
that load from other processes on a shared machine hits both sides alike; we report medians and
their ratios, never absolute speeds across runs. Not a test: it prints figures for
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_base(hidden: int, layers: int, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1024, hidden_size=hidden, intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, rounds: int, warmup: int, device: str) -> dict[str, list[float]]:
    """Seconds per call of each fn for every round, alternating the order every round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(warmup + rounds):
        for name in names if i % 2 == 0 else reversed(names):
            sync(device)
            t0 = time.perf_counter()
            fns[name]()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def python_calls(fn) -> int:
    """Python function calls made by one call of fn (cProfile): per-layer overhead, free of timing noise."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    return pstats.Stats(profiler).total_calls


def row(label: str, times: dict[str, list[float]], ours: str, ref: str) -> str:
    """Markdown row: medians, and the median and IQR of the per-round ratios (paired, so drift cancels)."""
    ratios = sorted(a / b for a, b in zip(times[ours], times[ref]))
    q1, q3 = statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]
    return (f"| {label} | {statistics.median(times[ours]):.4f} | {ref} {statistics.median(times[ref]):.4f} "
            f"| **{statistics.median(ratios):.3f}** | {q1:.3f}–{q3:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import peft

    from swiftlite import Swift
    from swiftlite.tuners.lora import LoRAConfig

    base = build_base(args.hidden, args.layers, args.device)
    swift_model = Swift.prepare_model(copy.deepcopy(base), LoRAConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    peft_model = peft.get_peft_model(copy.deepcopy(base),
                                     peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 1024, (args.batch, args.seq), generator=g).to(args.device)
    batch = {"input_ids": ids, "labels": ids}

    def train_step(model, opt):
        def step():
            opt.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            opt.step()
        return step

    # a second, identical swiftlite model: its step-time ratio to the first is the noise floor (A/A)
    swift_twin = Swift.prepare_model(copy.deepcopy(base), LoRAConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    opts = {}
    for name, model in (("swiftlite", swift_model), ("peft", peft_model), ("twin", swift_twin)):
        model.train()
        opts[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    n_train = {name: sum(p.numel() for p in m.parameters() if p.requires_grad)
               for name, m in (("swiftlite", swift_model), ("peft", peft_model))}
    assert n_train["swiftlite"] == n_train["peft"], n_train
    step_times = interleaved({"swiftlite": train_step(swift_model, opts["swiftlite"]),
                              "PEFT": train_step(peft_model, opts["peft"]),
                              "twin": train_step(swift_twin, opts["twin"])}, args.rounds, args.warmup, args.device)
    del swift_twin, opts["twin"]

    # inference: unmerged adapters (a large batch, then a latency-bound one where per-layer Python
    # overhead shows), then swiftlite's merge_and_unload vs the untouched base
    for m in (base, swift_model, peft_model):
        m.eval()
    small = ids[:1, :8]
    with torch.no_grad():
        unmerged = interleaved({"base": lambda: base(input_ids=ids), "swiftlite": lambda: swift_model(input_ids=ids),
                                "PEFT": lambda: peft_model(input_ids=ids)}, args.rounds, args.warmup, args.device)
        tiny = interleaved({"swiftlite": lambda: swift_model(input_ids=small), "PEFT": lambda: peft_model(input_ids=small)},
                           args.rounds * 10, args.warmup * 10, args.device)
        calls = {name: python_calls(lambda: m(input_ids=small))
                 for name, m in (("base", base), ("swiftlite", swift_model), ("PEFT", peft_model))}
        merged = swift_model.merge_and_unload()
        control = copy.deepcopy(base)  # same model again: its ratio to base shows the noise floor
        merged_times = interleaved({"base": lambda: base(input_ids=ids), "merged": lambda: merged(input_ids=ids),
                                    "control": lambda: control(input_ids=ids)}, args.rounds, args.warmup, args.device)

    print(f"LLaMA hidden={args.hidden} layers={args.layers} seq={args.seq} batch={args.batch}; LoRA r=8 on "
          f"{'/'.join(TARGETS)}; trainable params {n_train['swiftlite']:,} (both); device={args.device}, "
          f"threads={args.threads}, rounds={args.rounds} (+{args.warmup} warmup), torch {torch.__version__}, "
          f"peft {peft.__version__}")
    print("| measurement (median seconds) | swiftlite | reference | ratio (median of per-round ratios) | ratio IQR |")
    print("|---|---|---|---|---|")
    print(row("train step (fwd+bwd+AdamW)", step_times, "swiftlite", "PEFT"))
    print(row("control: train step of a second, identical swiftlite model vs the first (noise floor)",
              step_times, "twin", "swiftlite"))
    print(row("inference, adapters unmerged", unmerged, "swiftlite", "PEFT"))
    print(row(f"inference, adapters unmerged, batch 1 x seq 8 ({args.rounds * 10} rounds)", tiny, "swiftlite", "PEFT"))
    print(f"| Python calls per forward (cProfile; base model: {calls['base']}) | {calls['swiftlite']} | "
          f"PEFT {calls['PEFT']} | **{calls['swiftlite'] / calls['PEFT']:.3f}** | exact |")
    print(row("inference, adapters unmerged vs base model", unmerged, "swiftlite", "base"))
    print(row("inference, merge_and_unload() vs base model", merged_times, "merged", "base"))
    print(row("control: an identical copy of the base vs base (noise floor)", merged_times, "control", "base"))


if __name__ == "__main__":
    main()
