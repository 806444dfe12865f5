"""LoRA on a quantized base (QLoRA): the NF4 reference against bitsandbytes, LoRA on bitsandbytes / torchao / hqq
layers of llama-tiny, merging into a quantized base and its rounding cost, save/load across bases, PEFT's
preparation, ms-swift's config names. Libraries come from the `quant` extra; each test skips without its own."""
import importlib.util
import warnings

import pytest
import torch

import swiftlite.zoo as zoo
from swiftlite import Swift
from swiftlite.llm import nf4
from swiftlite.llm.quantized import (QuantizeArguments, backend_support, prepare_model_for_kbit_training,
                                     quantize_model, quantized_linear_count, weight_bytes)
from swiftlite.tuners import LoRAConfig
from swiftlite.tuners.lora.quantized import LoRAQuantizedLinear

HAS = {name: importlib.util.find_spec(name) is not None for name in ("bitsandbytes", "torchao", "hqq")}
needs = {name: pytest.mark.skipif(not ok, reason=f"{name} not installed (pip install swiftlite[quant])")
         for name, ok in HAS.items()}

ARGS = {  # backend -> ms-swift's QuantizeArguments
    "bnb-4bit": QuantizeArguments(quant_method="bnb", quant_bits=4),
    "bnb-8bit": QuantizeArguments(quant_method="bnb", quant_bits=8),
    "torchao": QuantizeArguments(quant_method="torchao", quant_bits=8),
    "hqq": QuantizeArguments(quant_method="hqq", quant_bits=4),
}
LIBRARY = {"bnb-4bit": "bitsandbytes", "bnb-8bit": "bitsandbytes", "torchao": "torchao", "hqq": "hqq"}
BACKENDS = [pytest.param(b, marks=needs[LIBRARY[b]]) for b in ARGS]
TARGETS = ["q_proj", "v_proj", "down_proj"]


@pytest.fixture(scope="module")
def llama():
    model, tokenizer = zoo.load("llama-tiny")
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def batch(llama):
    torch.manual_seed(0)
    ids = torch.randint(0, llama[0].config.vocab_size, (2, 24))
    return {"input_ids": ids, "labels": ids}


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"]).logits


def _quantized(llama, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_model(llama[0], ARGS[backend]).eval()


# ---- the NF4 reference -------------------------------------------------------------------------------
def test_nf4_code_book_has_16_sorted_values_with_exact_zero_and_ends_at_one():
    code = nf4.nf4_code_book()
    assert code.shape == (16,) and torch.all(code[1:] > code[:-1])
    assert code[0] == -1 and code[-1] == 1 and (code == 0).sum() == 1
    assert (code > 0).sum() == 8 and (code < 0).sum() == 7  # asymmetric: 8 positive, 7 negative


def test_nf4_storage_costs_4_5_bits_and_4_127_with_double_quantization():
    W = torch.randn(256, 256)
    assert nf4.nf4_quantize(W, double_quant=False).bits_per_weight() == pytest.approx(4 + 32 / 64)
    # QLoRA §3: double quantization brings the constants from 0.5 to 8/64 + 32/(64·256) = 0.127 bit per weight
    assert nf4.nf4_quantize(W).bits_per_weight() == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))


def test_nf4_beats_an_evenly_spaced_4_bit_code_on_normal_weights_and_smaller_blocks_help():
    W = torch.randn(128, 256, generator=torch.Generator().manual_seed(0))
    assert nf4.reconstruction_error(W, 64, code="nf4") < nf4.reconstruction_error(W, 64, bits=4, code="linear")
    assert nf4.reconstruction_error(W, 16) < nf4.reconstruction_error(W, 64) < nf4.reconstruction_error(W, 1024)
    with pytest.raises(ValueError, match="code='nf4' has 4 bits"):
        nf4.reconstruction_error(W, bits=3)


@needs["bitsandbytes"]
@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_reference_reproduces_bitsandbytes_storage_and_dequantized_weight(double_quant):
    import bitsandbytes as bnb

    assert torch.allclose(nf4.nf4_code_book(), bnb.functional.get_4bit_type("nf4", device="cpu"), atol=1e-6)
    W = torch.randn(96, 384, generator=torch.Generator().manual_seed(1)) * 0.02  # in_features a multiple of 64
    packed, state = bnb.functional.quantize_4bit(W, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
    theirs = bnb.functional.dequantize_4bit(packed, state)
    code2 = state.state2.code if double_quant else None
    ours = nf4.nf4_quantize(W, 64, double_quant=double_quant, code2=code2)
    assert torch.equal(ours.packed, packed.flatten())  # the same 4-bit index for every weight
    if not double_quant:
        assert torch.equal(ours.absmax, state.absmax)  # the same float32 constant per block of 64
        assert torch.allclose(ours.dequantize(), theirs, atol=1e-7)
    else:  # the 8-bit index of a constant may round the other way at a near-tie (nearest value vs its search)
        step = (ours.absmax.int() - state.absmax.int()).abs()
        assert step.max() <= 1 and (step > 0).float().mean() < 0.02
        assert (ours.dequantize() - theirs).abs().max() < 2e-3 * W.abs().max()  # one 8-bit step of one block's c_b
        # reading bitsandbytes' own storage with the reference gives exactly its weight
        stored = nf4.NF4Weight(packed.flatten(), state.absmax, W.shape, 64, state.state2.absmax, state.state2.code,
                               float(state.offset))
        assert torch.allclose(stored.dequantize(), theirs, atol=1e-7)


@needs["bitsandbytes"]
def test_bitsandbytes_cpu_kernel_misreads_4bit_weights_whose_rows_are_not_whole_blocks():
    """README: bitsandbytes 0.50.2's native CPU dequantize_4bit (used by Linear4bit's forward and backward) returns
    wrong weights when in_features is not a multiple of the block size and there is more than one row; its own
    generic PyTorch path agrees with the reference. If this test fails, bitsandbytes fixed it: update the README."""
    import bitsandbytes as bnb

    W = torch.randn(64, 352, generator=torch.Generator().manual_seed(0)) * 0.02  # llama-tiny's down_proj: 352 = 5.5·64
    packed, state = bnb.functional.quantize_4bit(W, blocksize=64, compress_statistics=False, quant_type="nf4")
    ours = nf4.nf4_quantize(W, 64, double_quant=False)
    assert torch.equal(ours.packed, packed.flatten())  # the stored indices are right
    native_error = (bnb.functional.dequantize_4bit(packed, state) - ours.dequantize()).abs().max().item()
    assert native_error > 1e-2, native_error  # ... the native kernel reads them back wrong


@needs["bitsandbytes"]
def test_quantize_model_warns_about_layers_the_bitsandbytes_cpu_kernel_misreads():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                         num_attention_heads=2))
    with pytest.warns(UserWarning, match=r"1 layers \(model.layers.0.mlp.down_proj, ...\) compute with misread"):
        quantize_model(model, QuantizeArguments(quant_method="bnb", quant_bits=4))


@needs["bitsandbytes"]
def test_bitsandbytes_avx512_repacking_crashes_where_quantize_model_turns_it_off():
    """README: on a CPU with AVX512-BF16, Linear4bit's first eval-mode no-grad forward repacks the weight and fails
    for in_features that are not whole blocks; quantize_model (and LoRA's wrapper) keep the standard layout."""
    import bitsandbytes as bnb
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                         num_attention_heads=2)).eval()
    with pytest.warns(UserWarning, match="misread"):
        quantized = quantize_model(model, QuantizeArguments(quant_method="bnb", quant_bits=4)).eval()
    with torch.no_grad():
        assert torch.isfinite(quantized(torch.tensor([[1, 2, 3]])).logits).all()
    if not bnb.nn.Linear4bit(96, 64).support_avx512bf16_for_cpu:
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes never repacks here")
    raw = bnb.nn.Linear4bit(96, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
    raw.load_state_dict(torch.nn.Linear(96, 64, bias=False).state_dict())
    raw = raw.to("cpu").eval()
    with torch.no_grad(), pytest.raises(RuntimeError, match="is invalid for input of size"):
        raw(torch.randn(2, 96))


# ---- which backends work on this CPU -----------------------------------------------------------------
@pytest.mark.skipif(not all(HAS.values()), reason="needs bitsandbytes, torchao and hqq (pip install swiftlite[quant])")
def test_backend_support_table_in_the_readme():
    rows = {row["case"]: row for row in backend_support()}
    works = [case for case, row in rows.items() if row["works"]]
    assert works == ["bitsandbytes Linear4bit nf4 + double quant", "bitsandbytes Linear4bit fp4",
                     "bitsandbytes Linear8bitLt (LLM.int8)", "torchao Int8WeightOnlyConfig",
                     "torchao IntxWeightOnlyConfig int4", "hqq HQQLinear 4 bit"]
    assert rows["torchao Int4WeightOnlyConfig"]["error"] == "ImportError: Requires mslk >= 1.0.0"
    assert rows["transformers HqqConfig"]["error"].startswith("NotImplementedError: QuantizationMethod.HQQ is not available")
    errors = {case: rows[case]["max_abs_error"] for case in works}  # |Q(W0) x - W0 x| on the same layer
    assert errors["bitsandbytes Linear8bitLt (LLM.int8)"] < errors["bitsandbytes Linear4bit nf4 + double quant"]
    assert errors["torchao Int8WeightOnlyConfig"] < errors["torchao IntxWeightOnlyConfig int4"]


# ---- LoRA on each backend's layers of llama-tiny -----------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_lora_on_a_quantized_llama_trains_only_the_full_precision_adapter(llama, batch, backend):
    base = _quantized(llama, backend)
    assert quantized_linear_count(base)[backend] == 7 * llama[0].config.num_hidden_layers  # lm_head stays float
    assert weight_bytes(base) < weight_bytes(llama[0])
    before = _logits(base, batch)
    model = Swift.prepare_model(base, LoRAConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    layer = model.base_model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, LoRAQuantizedLinear) and layer.lora_A["default"].weight.dtype == torch.float32
    assert torch.equal(_logits(model, batch), before)  # B = 0: h = Q(W0) x
    stored = {k: v.clone() for k, v in base.state_dict().items() if "lora_" not in k and torch.is_tensor(v)
              and not hasattr(type(v), "__tensor_flatten__")}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in stored.items())  # the quantized weights never move
    assert not torch.equal(_logits(model, batch), before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_into_a_quantized_base_requantizes_warns_and_unmerge_restores_exactly(llama, batch, backend):
    model = Swift.prepare_model(_quantized(llama, backend), LoRAConfig(r=4, target_modules=TARGETS,
                                                                        init_lora_weights=False))
    adapted = _logits(model, batch)
    layer = model.base_model.model.layers[0].mlp.down_proj
    dense = layer.dequantized_weight() + layer.delta_weight("default")  # deq(Q(W0)) + s·BA
    with pytest.warns(UserWarning, match="rounds W0 \\+ ΔW to the quantization grid"):
        Swift.merge(model)
    assert layer.backend.matches(layer.base_layer)  # still the library's quantized layer
    rounding = (layer.dequantized_weight() - dense).abs().max().item()
    merged_error = (_logits(model, batch) - adapted).abs().max().item()
    assert 0 < rounding and 0 < merged_error  # the merge's accuracy cost, measured
    assert merged_error < 0.5 * adapted.abs().max().item()  # ... and close to the adapter's output
    Swift.unmerge(model)
    assert torch.equal(_logits(model, batch), adapted)  # the pre-merge quantized layer, put back


@needs["bitsandbytes"]
def test_merge_cost_grows_as_bits_shrink(llama, batch):
    cost = {}
    for backend in ("bnb-8bit", "bnb-4bit"):
        torch.manual_seed(0)
        model = Swift.prepare_model(_quantized(llama, backend), LoRAConfig(r=4, target_modules=TARGETS,
                                                                            init_lora_weights=False))
        adapted = _logits(model, batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Swift.merge(model)
        cost[backend] = (_logits(model, batch) - adapted).abs().mean().item()
    assert cost["bnb-8bit"] < cost["bnb-4bit"], cost


@needs["bitsandbytes"]
def test_adapter_saved_on_a_4bit_base_loads_on_the_4bit_and_on_the_float_base(llama, batch, tmp_path):
    model = Swift.prepare_model(_quantized(llama, "bnb-4bit"), LoRAConfig(r=4, target_modules=TARGETS,
                                                                           init_lora_weights=False))
    adapted = _logits(model, batch)
    model.save_pretrained(tmp_path)
    again = Swift.from_pretrained(_quantized(llama, "bnb-4bit"), str(tmp_path))
    assert torch.equal(_logits(again, batch), adapted)
    float_base, _ = zoo.load("llama-tiny")
    on_float = Swift.from_pretrained(float_base.eval(), str(tmp_path))
    on_float_logits = _logits(on_float, batch)
    with torch.no_grad(), model.disable_adapter():
        quantization_gap = (_logits(model, batch) - _logits(llama[0], batch)).abs().max().item()
    # the same adapter, now beside W0 instead of Q(W0): it differs by about the quantization error
    assert 0 < (on_float_logits - adapted).abs().max().item() < 2 * quantization_gap + 1e-3
    Swift.merge(on_float)  # merging into the float base is exact (no rounding, no warning)
    assert torch.allclose(_logits(on_float, batch), on_float_logits, atol=1e-4)


@needs["bitsandbytes"]
def test_prepare_model_for_kbit_training_freezes_the_base_and_checkpoints(llama, batch):
    base = prepare_model_for_kbit_training(_quantized(llama, "bnb-4bit"))
    assert not any(p.requires_grad for p in base.parameters())
    assert base.is_activation_checkpointing
    model = Swift.prepare_model(base, LoRAConfig(r=4, target_modules=TARGETS))
    model.train()
    model(**batch).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@needs["bitsandbytes"]
def test_dora_on_a_quantized_base_is_refused_before_anything_changes(llama):
    base = _quantized(llama, "bnb-4bit")
    with pytest.raises(ValueError, match="LoRAConfig.use_dora: DoRA on a quantized base"):
        Swift.prepare_model(base, LoRAConfig(r=4, target_modules=TARGETS, use_dora=True))
    assert not any(isinstance(m, LoRAQuantizedLinear) for m in base.modules())


# ---- ms-swift's config names ------------------------------------------------------------------------
def test_quantize_arguments_use_ms_swift_names_and_name_the_bad_field():
    with pytest.raises(ValueError, match="QuantizeArguments.quant_method"):
        QuantizeArguments(quant_method="gptq")
    with pytest.raises(ValueError, match="QuantizeArguments.quant_bits: bnb takes"):
        QuantizeArguments(quant_method="bnb", quant_bits=3)
    with pytest.raises(ValueError, match="QuantizeArguments.bnb_4bit_quant_type"):
        QuantizeArguments(quant_method="bnb", bnb_4bit_quant_type="int4")


@needs["bitsandbytes"]
def test_bnb_arguments_become_transformers_bits_and_bytes_config():
    config = QuantizeArguments(quant_method="bnb", quant_bits=4, bnb_4bit_use_double_quant=False,
                               bnb_4bit_quant_type="fp4").get_quantization_config()
    assert type(config).__name__ == "BitsAndBytesConfig" and config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "fp4" and config.bnb_4bit_use_double_quant is False
    assert config.bnb_4bit_compute_dtype == torch.float32


@needs["torchao"]
def test_torchao_int4_weight_only_keeps_one_value_per_byte(llama):
    eight, four = (quantize_model(llama[0], QuantizeArguments(quant_method="torchao", quant_bits=bits)) for bits in (8, 4))
    layer = four.model.layers[0].self_attn.q_proj
    assert type(layer.weight).__name__ == "IntxUnpackedToInt8Tensor" and layer.weight.qdata.dtype == torch.int8
    assert weight_bytes(four) >= 0.95 * weight_bytes(eight)  # int4 values stored unpacked: no saving over int8


@needs["bitsandbytes"]
def test_4bit_nf4_double_quant_base_weighs_under_a_third_of_float32(llama):
    base = _quantized(llama, "bnb-4bit")
    linear = [n for n, m in llama[0].named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    float_bytes = sum(llama[0].get_submodule(n).weight.numel() * 4 for n in linear)
    quant_bytes = sum(weight_bytes(base.get_submodule(n)) for n in linear)
    assert quant_bytes < float_bytes / 3 * 1.05  # 4.127 bits + bitsandbytes' small per-layer state vs 32 bits


@needs["bitsandbytes"]
def test_other_tuners_train_on_a_4bit_base_and_weight_merges_are_refused(llama, batch):
    import swiftlite.tuners as T

    hidden = llama[0].config.hidden_size
    configs = {"ia3": T.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
               "adapter": T.AdapterConfig(dim=hidden, target_modules=r"model\.layers\.\d+\.mlp", adapter_length=8)}
    for name, config in configs.items():
        model = Swift.prepare_model(_quantized(llama, "bnb-4bit"), config)
        model.train()
        model(**batch).loss.backward()
        trained = [p for p in model.parameters() if p.requires_grad]
        assert trained and all(p.dtype == torch.float32 and p.grad is not None for p in trained), name
    with pytest.raises(NotImplementedError, match="IA3Layer cannot merge into the quantized Linear4bit"):
        Swift.merge(Swift.prepare_model(_quantized(llama, "bnb-4bit"), configs["ia3"]))


@needs["bitsandbytes"]
def test_unmerging_out_of_order_on_a_quantized_base_gets_back_to_the_original(llama, batch):
    model = Swift.prepare_model(_quantized(llama, "bnb-8bit"), {
        "first": LoRAConfig(r=4, target_modules=TARGETS, init_lora_weights=False),
        "second": LoRAConfig(r=2, target_modules=TARGETS, init_lora_weights=False)})
    model.set_active_adapters(["first", "second"])
    adapted = _logits(model, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.merge()
        model.unmerge("first")  # merged before "second": "second" is merged again on the restored layer
    layer = model.base_model.model.layers[0].self_attn.q_proj
    assert layer.merged_adapters == ["second"]
    assert (_logits(model, batch) - adapted).abs().max() < 1.0  # "first" unmerged, "second" merged: near
    model.unmerge("second")
    assert torch.equal(_logits(model, batch), adapted)  # both unmerged: exactly the adapted model
