"""Fused Triton kernels (swiftlite/kernels/) against eager PyTorch: time and peak memory, as ratios.

    python benchmarks/kernels.py                  # on a CUDA GPU with Triton installed
    python benchmarks/kernels.py --rounds 50

Three comparisons, each fused / eager (below 1.0: the fused path is faster or smaller):
- LoRA linear, forward + backward: `fused_lora.lora_linear` vs `lora_linear_reference` (autograd);
- SC-Tuner bottleneck, forward + backward: `bottleneck.fused_bottleneck` vs `bottleneck_reference`;
- mixed-adapter batch, forward: bgmv shrink + expand (one launch each) vs PEFT's loop (gather the rows
  of each adapter, two matmuls, scatter back).
Time: median over rounds of CUDA-event times, eager and fused interleaved in each round; memory: peak
allocated bytes above the inputs during one call.

On a machine without a CUDA GPU it refuses (exit status 2): the kernels there run in Triton's
interpreter, whose speed says nothing about a GPU. `--cpu-dry-run` runs tiny shapes through the same
code in the interpreter to check the script itself; its figures are not measurements.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny shapes in the interpreter (no timing meaning)")
    return parser.parse_args(argv)


def _cases(dry: bool):
    """(name, shapes): real-model sizes on a GPU; tiny ones for the dry run."""
    if dry:
        return dict(lora=dict(M=40, d_in=48, d_out=40, r=4), bottleneck=dict(M=40, d=40, m=10),
                    mixed=dict(N=40, d_in=48, d_out=40, r=4, adapters=3))
    return dict(lora=dict(M=8192, d_in=4096, d_out=4096, r=16),  # 4 × 2048 tokens through a 7B-sized projection
                bottleneck=dict(M=8 * 64 * 64, d=320, m=80),  # an SD 1.5 skip feature, SC-Tuner down_ratio 0.25
                mixed=dict(N=4096, d_in=4096, d_out=4096, r=16, adapters=8))


def main(argv=None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.cpu_dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernel files are imported
    import torch

    if not args.cpu_dry_run:
        if not torch.cuda.is_available():
            print("benchmarks/kernels.py: this benchmark needs a CUDA GPU and torch.cuda.is_available() is False "
                  "here. On a CPU the kernels run in Triton's interpreter, whose speed means nothing for a GPU; "
                  "no GPU timing exists yet. (--cpu-dry-run checks the script on tiny shapes.)", file=sys.stderr)
            return 2
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            print("benchmarks/kernels.py: unset TRITON_INTERPRET to compile the kernels for the GPU", file=sys.stderr)
            return 2
    from swiftlite.kernels import bgmv, bottleneck, fused_lora, use_triton

    if bgmv.triton is None:
        print("benchmarks/kernels.py: Triton is not installed (pip install 'swiftlite[triton]')", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu_dry_run else "cuda"
    dtype = torch.float32 if args.cpu_dry_run else torch.float16
    cases = _cases(args.cpu_dry_run)
    gen = torch.Generator(device=device).manual_seed(0)

    def rand(*shape, scale=1.0, grad=False):
        return (torch.randn(*shape, generator=gen, device=device, dtype=torch.float32) * scale).to(dtype).requires_grad_(grad)

    # ---- the three pairs of callables (eager, fused) ----------------------------------------------------
    c = cases["lora"]
    x, W0 = rand(c["M"], c["d_in"], grad=True), rand(c["d_out"], c["d_in"], scale=0.02)
    A, B = rand(c["r"], c["d_in"], scale=0.02, grad=True), rand(c["d_out"], c["r"], scale=0.02, grad=True)
    dy = rand(c["M"], c["d_out"])

    def lora_eager():
        torch.autograd.backward(fused_lora.lora_linear_reference(x, W0, None, A, B, 2.0), dy)

    def lora_fused():
        torch.autograd.backward(fused_lora.lora_linear(x, W0, None, A, B, 2.0), dy)

    c = cases["bottleneck"]
    h = rand(c["M"], c["d"], grad=True)
    Wd, bd = rand(c["m"], c["d"], scale=0.05, grad=True), rand(c["m"], scale=0.05, grad=True)
    Wu, bu = rand(c["d"], c["m"], scale=0.05, grad=True), rand(c["d"], scale=0.05, grad=True)
    dh = rand(c["M"], c["d"])

    def bottleneck_eager():
        torch.autograd.backward(bottleneck.bottleneck_reference(h, Wd, bd, Wu, bu), dh)

    def bottleneck_fused():
        torch.autograd.backward(bottleneck.fused_bottleneck(h, Wd, bd, Wu, bu), dh)

    c = cases["mixed"]
    rows = rand(c["N"], c["d_in"])
    As, Bs = rand(c["adapters"], c["r"], c["d_in"], scale=0.02), rand(c["adapters"], c["d_out"], c["r"], scale=0.02)
    scaling = torch.full((c["adapters"],), 2.0, device=device)
    idx = torch.randint(-1, c["adapters"], (c["N"],), generator=gen, device=device)
    groups = [(i, (idx == i).nonzero().squeeze(1)) for i in range(c["adapters"])]

    @torch.no_grad()
    def mixed_eager():  # PEFT's loop: per adapter, gather its rows, two matmuls, add back
        y = torch.zeros(c["N"], c["d_out"], device=device, dtype=dtype)
        for i, r in groups:
            y.index_add_(0, r, (rows[r] @ As[i].T @ Bs[i].T) * 2.0)
        return y

    @torch.no_grad()
    def mixed_fused():
        return bgmv.bgmv_expand(bgmv.bgmv_shrink(rows, As, idx, scaling), Bs, idx)

    pairs = {"LoRA linear fwd+bwd": (lora_eager, lora_fused), "SC-Tuner bottleneck fwd+bwd": (bottleneck_eager, bottleneck_fused),
             "mixed-adapter batch fwd (bgmv)": (mixed_eager, mixed_fused)}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    def peak(fn) -> int:
        if device != "cuda":
            return 0
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        sync()
        return torch.cuda.max_memory_allocated() - base

    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU (dry run: Triton interpreter)'}, "
          f"{dtype}, torch {torch.__version__}, triton {bgmv.triton.__version__}, rounds {args.rounds}")
    print("| kernel | shapes | eager median s | fused median s | time ratio fused/eager | memory ratio fused/eager |")
    print("|---|---|---|---|---|---|")
    with use_triton(True):
        for (name, (eager, fused)), shapes in zip(pairs.items(), cases.values()):
            for _ in range(args.warmup):
                eager(), fused()
            t_eager, t_fused = [], []
            for i in range(args.rounds):  # interleaved, alternating which goes first
                order = [(eager, t_eager), (fused, t_fused)][:: 1 if i % 2 == 0 else -1]
                for fn, out in order:
                    out.append(timed(fn))
            m_eager, m_fused = peak(eager), peak(fused)
            te, tf = statistics.median(t_eager), statistics.median(t_fused)
            mem = f"{m_fused / m_eager:.3f}" if m_eager else "n/a (CPU)"
            print(f"| {name} | {shapes} | {te:.5f} | {tf:.5f} | {tf / te:.3f} | {mem} |")
    if args.cpu_dry_run:
        print("(dry run: interpreter times on tiny shapes, not a measurement)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
