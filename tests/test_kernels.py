"""swiftlite/kernels: every Triton kernel against its PyTorch reference, in Triton's interpreter on CPU tensors.

TRITON_INTERPRET=1 must be set before a kernel file is imported (tests/conftest.py sets it, and so does
this file, for a run of this file alone). Tests marked `needs_triton` skip when Triton is not installed;
the others (references, fallbacks, imports) run everywhere.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from swiftlite import Swift  # noqa: E402
from swiftlite.kernels import bgmv, bottleneck, dispatch, fused_lora, use_triton  # noqa: E402
from swiftlite.testing import models  # noqa: E402
from swiftlite.tuners import LoRAConfig  # noqa: E402
from swiftlite.tuners.scetuning import SCEAdapter  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed (pip install 'swiftlite[triton]')")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-2, atol=2e-2)}
# (rows, d_in, d_out, rank): batch 1, sizes that are not multiples of any block, a long sequence
SHAPES = [(1, 5, 3, 1), (37, 45, 70, 5), (160, 24, 20, 4)]


def _rand(*shape, dtype=torch.float32, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed + sum(shape))
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def _close(actual, expected, dtype):
    """fp16 results against the fp32 reference, relative to the reference's size."""
    tol = TOL[dtype]
    ref_scale = expected.abs().max().item() or 1.0
    torch.testing.assert_close(actual.float(), expected.float(), rtol=tol["rtol"], atol=tol["atol"] * ref_scale)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bgmv_shrink_expand_match_the_reference(shape, dtype):
    N, d_in, d_out, r = shape
    L = 3
    x, A, B = _rand(N, d_in, dtype=dtype), _rand(L, r, d_in, dtype=dtype, scale=0.3), _rand(L, d_out, r, dtype=dtype)
    idx = torch.randint(-1, L, (N,), generator=torch.Generator().manual_seed(N))  # several adapters and "none"
    scaling = torch.tensor([0.5, 2.0, 1.0])
    assert bgmv.KERNELS.why_not(x, A) is None  # the dispatcher below takes the Triton path
    with use_triton(True):
        z, y = bgmv.bgmv_shrink(x, A, idx, scaling), None
        y = bgmv.bgmv_expand(z, B, idx)
    z_ref = bgmv.bgmv_shrink_reference(x.float(), A.float(), idx, scaling)
    _close(z, z_ref, dtype)
    _close(y, bgmv.bgmv_expand_reference(z.float(), B.float(), idx), dtype)
    assert (y[idx < 0] == 0).all() and (z[idx < 0] == 0).all()


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_lora_linear_forward_and_gradients(shape, dtype):
    M, d_in, d_out, r = shape
    x = _rand(M, d_in, dtype=dtype).requires_grad_()
    W0, b = _rand(d_out, d_in, dtype=dtype, scale=0.2), _rand(d_out, dtype=dtype)
    A, B = _rand(r, d_in, dtype=dtype, scale=0.2).requires_grad_(), _rand(d_out, r, dtype=dtype).requires_grad_()
    assert fused_lora.KERNELS.why_not(x, W0) is None
    with use_triton(True):
        y = fused_lora.lora_linear(x, W0, b, A, B, 0.75)
        dy = _rand(*y.shape, dtype=dtype, seed=1)
        grads = torch.autograd.grad(y, (x, A, B), dy)
    leaves = [t.detach().float().requires_grad_() for t in (x, A, B)]
    y_ref = fused_lora.lora_linear_reference(leaves[0], W0.float(), b.float(), leaves[1], leaves[2], 0.75)
    refs = torch.autograd.grad(y_ref, leaves, dy.float())
    _close(y, y_ref, dtype)
    for got, ref in zip(grads, refs):  # dx, dA, dB
        _close(got, ref, dtype)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(1, 5, 1), (37, 45, 6), (160, 24, 20)], ids=str)
def test_fused_bottleneck_forward_and_gradients(shape, dtype):
    M, d, m = shape
    x = _rand(M, d, dtype=dtype).requires_grad_()
    params = [_rand(m, d, dtype=dtype, scale=0.3), _rand(m, dtype=dtype), _rand(d, m, dtype=dtype, scale=0.3),
              _rand(d, dtype=dtype)]
    params = [p.requires_grad_() for p in params]
    assert bottleneck.KERNELS.why_not(x) is None
    with use_triton(True):
        out = bottleneck.fused_bottleneck(x, *params, 0.6)
        dout = _rand(*out.shape, dtype=dtype, seed=2)
        grads = torch.autograd.grad(out, (x, *params), dout)
    leaves = [t.detach().float().requires_grad_() for t in (x, *params)]
    ref = bottleneck.bottleneck_reference(*leaves, 0.6)
    refs = torch.autograd.grad(ref, leaves, dout.float())
    _close(out, ref, dtype)
    for got, expected in zip(grads, refs):  # dx, dW_down, db_down, dW_up, db_up
        _close(got, expected, dtype)


def _llama_two_adapters():
    base, _ = models.llama()
    torch.manual_seed(0)
    return Swift.prepare_model(base, {
        "a": LoRAConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False),
        "b": LoRAConfig(r=2, lora_alpha=16, target_modules=["q_proj", "o_proj"], init_lora_weights=False)}).eval()


@needs_triton
def test_mixed_batch_through_bgmv_equals_the_pytorch_path(monkeypatch):
    model = _llama_two_adapters()
    ids = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(5))
    names = ["b", "__base__", "a"]
    eager = model(input_ids=ids, adapter_names=names).logits
    calls = []
    monkeypatch.setattr(bgmv, "_bgmv_expand_triton", lambda *a, f=bgmv._bgmv_expand_triton: calls.append(1) or f(*a))
    with use_triton(True):
        fused = model(input_ids=ids, adapter_names=names).logits
    assert len(calls) == 8  # the layers holding a named adapter: q, v, o, down_proj in both decoder layers
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)


@needs_triton
def test_mixed_batch_through_bgmv_on_gpt2_conv1d(monkeypatch):
    base, _ = models.gpt2()
    torch.manual_seed(0)
    model = Swift.prepare_model(base, {
        "a": LoRAConfig(r=3, target_modules=["c_attn"], init_lora_weights=False),
        "b": LoRAConfig(r=5, target_modules=["c_attn", "c_proj"], init_lora_weights=False)}).eval()
    ids = torch.randint(0, 64, (3, 4), generator=torch.Generator().manual_seed(6))
    names = ["a", "b", "__base__"]
    eager = model(input_ids=ids, adapter_names=names).logits
    calls = []
    monkeypatch.setattr(bgmv, "_bgmv_shrink_triton", lambda *a, f=bgmv._bgmv_shrink_triton: calls.append(1) or f(*a))
    with use_triton(True):
        fused = model(input_ids=ids, adapter_names=names).logits
    assert len(calls) == 6  # c_attn, attn.c_proj, mlp.c_proj in both blocks (Conv1D layers)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)


@needs_triton
def test_lora_layer_routes_through_the_fused_function(monkeypatch):
    base, inputs = models.llama()
    torch.manual_seed(0)
    model = Swift.prepare_model(base, LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.train()
    lora = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads():
        out = model(**inputs, labels=inputs["input_ids"])
        return out.loss.detach(), torch.autograd.grad(out.loss, lora)

    eager_loss, eager_grads = loss_and_grads()
    calls = []
    apply = fused_lora.LoRALinearFunction.apply
    monkeypatch.setattr(fused_lora.LoRALinearFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    with use_triton(True):
        fused_loss, fused_grads = loss_and_grads()
    assert len(calls) == 4  # q_proj and v_proj in both decoder layers
    torch.testing.assert_close(fused_loss, eager_loss, rtol=1e-5, atol=1e-5)
    for got, ref in zip(fused_grads, eager_grads):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@needs_triton
def test_sce_adapter_routes_through_the_fused_bottleneck(monkeypatch):
    torch.manual_seed(0)
    adapter = SCEAdapter(dim=12, adapter_length=3)
    torch.nn.init.normal_(adapter.ln2.weight)  # not the zero init, so the branch matters
    x = torch.randn(2, 12, 5, 3, requires_grad=True)  # a (B, C, H, W) skip feature
    eager = adapter(x, scale=0.5)
    eager_grads = torch.autograd.grad(eager.square().sum(), [x, *adapter.parameters()])
    calls = []
    apply = bottleneck.BottleneckFunction.apply
    monkeypatch.setattr(bottleneck.BottleneckFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    with use_triton(True):
        fused = adapter(x, scale=0.5)
        fused_grads = torch.autograd.grad(fused.square().sum(), [x, *adapter.parameters()])
    assert calls == [1]
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)
    for got, ref in zip(fused_grads, eager_grads):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_fallback_says_why_once(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    compiled_only = dispatch.KernelFile("swiftlite.kernels.example")
    x = torch.ones(2)
    if compiled_only.triton is not None:
        assert "TRITON_INTERPRET=1 was not set when swiftlite.kernels.example was imported" in compiled_only.why_not(x)
    monkeypatch.setitem(sys.modules, "triton", None)  # as if Triton were not installed
    absent = dispatch.KernelFile("swiftlite.kernels.example")
    assert absent.triton is None and "Triton is not installed" in absent.why_not(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not absent.use("example_kernel", x)  # switch off: no warning, no Triton
        with use_triton(True):
            assert not absent.use("example_kernel", x) and not absent.use("example_kernel", x)
    said = [w for w in caught if "example_kernel runs its PyTorch reference" in str(w.message)]
    assert len(said) == 1


def test_swiftlite_triton_env_turns_the_switch_on_at_start(monkeypatch):
    monkeypatch.setenv("SWIFTLITE_TRITON", "1")
    try:
        importlib.reload(dispatch)
        assert dispatch.triton_enabled()
    finally:
        monkeypatch.delenv("SWIFTLITE_TRITON")
        importlib.reload(dispatch)
    assert not dispatch.triton_enabled()


@needs_triton
def test_interpreter_refuses_bfloat16():
    assert bgmv.KERNELS.interpreted
    assert "no bfloat16" in bgmv.KERNELS.why_not(torch.ones(2, dtype=torch.bfloat16))


def test_use_triton_is_a_switch_and_a_block():
    assert not dispatch.triton_enabled()
    with use_triton(True):
        assert dispatch.triton_enabled()
    assert not dispatch.triton_enabled()
    with pytest.raises(TypeError, match="use_triton"):
        use_triton("yes")


def test_kernels_import_and_fall_back_without_triton():
    """A process where `import triton` fails: the kernel files import, and with the switch on every
    kernel runs its reference (with one warning each), equal to the eager computation."""
    code = """
import sys, warnings
sys.modules["triton"] = None
sys.modules["triton.language"] = None
import torch
from swiftlite.kernels import use_triton, bgmv, fused_lora, bottleneck
assert bgmv.triton is None and fused_lora.triton is None and bottleneck.triton is None
x, W, A, B = torch.randn(5, 7), torch.randn(4, 7), torch.randn(2, 7), torch.randn(4, 2)
with warnings.catch_warnings(record=True) as caught, use_triton(True):
    warnings.simplefilter("always")
    y = fused_lora.lora_linear(x, W, None, A, B, 0.5)
assert torch.allclose(y, fused_lora.lora_linear_reference(x, W, None, A, B, 0.5), atol=1e-6)
assert any("Triton is not installed" in str(w.message) for w in caught)
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def _benchmark_script():
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "kernels.py")
    spec = importlib.util.spec_from_file_location("benchmark_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a CUDA GPU")
def test_benchmark_refuses_politely_without_a_gpu(capsys):
    assert _benchmark_script().main([]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "no GPU timing exists yet" in err


@needs_triton
def test_benchmark_dry_run_prints_the_ratio_table(capsys):
    assert _benchmark_script().main(["--cpu-dry-run", "--rounds", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    for row in ("LoRA linear fwd+bwd", "SC-Tuner bottleneck fwd+bwd", "mixed-adapter batch fwd (bgmv)"):
        assert f"| {row} |" in out
    assert "not a measurement" in out
