"""Multimodal tuning as ms-swift does it (swiftlite.llm.multimodal / image_sft, zoo llava-tiny), on
transformers' real LlavaForConditionalGeneration and Qwen2VLForConditionalGeneration (tiny, random)."""

import itertools
import re

import numpy as np
import pytest
import torch
from torch import nn

from swiftlite import Swift, SwiftModel
from swiftlite.llm import multimodal as mm
from swiftlite.testing.models import llava, qwen2_vl
from swiftlite.tuners import LoRAConfig


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _linears_under(model, prefixes, exclude=()):
    """Names of nn.Linear modules under any of `prefixes` and under none of `exclude` (computed
    independently of the regex: by walking the module tree)."""
    out = set()
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.split(".")[-1] == "lm_head":
            continue
        inside = lambda ps: any(name == p or name.startswith(p + ".") for p in ps)  # noqa: E731
        if inside(prefixes) and not inside(exclude):
            out.add(name)
    return out


def _matched(model, regex):
    return {n for n, _ in model.named_modules() if re.fullmatch(regex, n)}


FLAGS = [dict(freeze_llm=a, freeze_vit=b, freeze_aligner=c)
         for a, b, c in itertools.product([False, True], repeat=3) if not (a and b and c)]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if not v) or "none")
def test_all_linear_regex_picks_exactly_the_enabled_linears(flags):
    model, _ = llava()
    regex = mm.multimodal_target_regex(model, **flags)
    want = set()
    if not flags["freeze_llm"]:
        want |= _linears_under(model, ["model.language_model"])
    if not flags["freeze_vit"]:
        want |= _linears_under(model, ["model.vision_tower"])
    if not flags["freeze_aligner"]:
        want |= _linears_under(model, ["model.multi_modal_projector"])
    got = _matched(model, regex)
    assert got == want and want
    assert "lm_head" not in got
    if flags["freeze_vit"]:
        assert not any(n.startswith("model.vision_tower") for n in got)


def test_nested_aligner_is_excluded_from_the_vision_tower_unless_enabled():
    model, _ = qwen2_vl()  # model.visual.merger (aligner) lives inside model.visual (vision tower)
    vit_only = _matched(model, mm.multimodal_target_regex(model, freeze_llm=True, freeze_vit=False))
    assert vit_only == _linears_under(model, ["model.visual"], exclude=["model.visual.merger"])
    assert "model.visual.patch_embed.proj" not in vit_only  # a Conv3d sharing a Linear's leaf name
    aligner_only = _matched(model, mm.multimodal_target_regex(model, freeze_llm=True, freeze_aligner=False))
    assert aligner_only == {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2"}
    both = _matched(model, mm.multimodal_target_regex(model, freeze_llm=True, freeze_vit=False, freeze_aligner=False))
    assert both == vit_only | aligner_only
    default = _matched(model, mm.multimodal_target_regex(model))  # ms-swift's defaults: the LLM only
    assert default == _linears_under(model, ["model.language_model"])


def test_lora_from_the_regex_lands_on_exactly_those_layers():
    model, _ = llava()
    regex = mm.multimodal_target_regex(model, freeze_aligner=False)
    want = _matched(model, regex)
    swift_model = Swift.prepare_model(model, LoRAConfig(r=2, target_modules=regex))
    lora_params = {n for n, p in swift_model.base_model.named_parameters() if "lora_A" in n}
    assert {n.split(".lora_A")[0] for n in lora_params} == want


def _expected_trainable(model, flags, arch):
    """ms-swift's rule, spelled out: all on; freeze LLM / ViT / generator; aligner off or on again."""
    on = {n: True for n, _ in model.named_parameters()}
    frozen = list(arch.generator)
    frozen += list(arch.language_model) if flags["freeze_llm"] else []
    frozen += list(arch.vision_tower) if flags["freeze_vit"] else []
    frozen += list(arch.aligner) if flags["freeze_aligner"] else []
    for n in on:
        if any(n.startswith(p + ".") for p in frozen):
            on[n] = False
        if not flags["freeze_aligner"] and any(n.startswith(p + ".") for p in arch.aligner):
            on[n] = True
    return {n for n, v in on.items() if v}


@pytest.mark.parametrize("factory", [llava, qwen2_vl], ids=["llava", "qwen2_vl"])
def test_freeze_flags_leave_exactly_the_intended_parameters_trainable(factory):
    model, _ = factory()
    arch = mm.get_model_arch(model)
    for flags in FLAGS:
        names = mm.freeze_parts(model, **flags)
        assert set(names) == _expected_trainable(model, flags, arch) == {
            n for n, p in model.named_parameters() if p.requires_grad}
    names = set(mm.freeze_parts(model))  # defaults: freeze_llm=False, freeze_vit=True, freeze_aligner=True
    assert names and all(n.startswith(("model.language_model.", "lm_head.")) for n in names)
    if factory is qwen2_vl:  # the aligner nested in the frozen vision tower trains, the rest of the tower not
        names = set(mm.freeze_parts(model, freeze_llm=True, freeze_aligner=False))
        assert names and all(n.startswith("model.visual.merger.") for n in names)
    with pytest.raises(ValueError, match="freeze_llm=freeze_vit=freeze_aligner=True"):
        mm.freeze_parts(model, freeze_llm=True)


def test_unknown_model_names_the_fix():
    from swiftlite.testing.models import llama

    model, _ = llama()
    with pytest.raises(ValueError, match="register_model_arch"):
        mm.multimodal_target_regex(model)


def _perturb(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_lora_llm_saves_and_reloads_both_parts(tmp_path):
    from safetensors.torch import load_file

    model, x = llava()
    swift_model = mm.prepare_lora_llm(model, r=4)
    trainable = {n for n, p in swift_model.base_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert {n for n in trainable if "lora" not in n} == {
        n for n, _ in model.named_parameters() if n.startswith(("model.vision_tower.", "model.multi_modal_projector."))}
    _perturb(swift_model)
    with torch.no_grad():
        expected = swift_model(**x).logits
    mm.save_lora_llm(swift_model, tmp_path)
    full = load_file(str(tmp_path / mm.VIT_WEIGHTS_NAME))
    assert set(full) == {n for n in trainable if "lora" not in n}
    assert (tmp_path / "default" / "adapter_model.safetensors").exists()

    fresh, _ = llava()
    with torch.no_grad():
        assert not torch.allclose(fresh(**x).logits, expected, atol=1e-4)
    loaded = mm.load_lora_llm(fresh, tmp_path, inference_mode=False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x).logits, expected)
    assert {n for n, p in loaded.base_model.named_parameters() if p.requires_grad} == trainable
    (tmp_path / mm.VIT_WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="vit.safetensors"):
        mm.load_lora_llm(llava()[0], tmp_path)


def test_stage2_lora_model_reloads_with_equal_outputs(tmp_path):
    model, x = llava()
    mm.freeze_parts(model, freeze_llm=True, freeze_aligner=False)  # stage 1 trained the projector ...
    _perturb(model)
    stage1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = LoRAConfig(r=4, lora_alpha=8, target_modules=mm.multimodal_target_regex(model, freeze_aligner=False))
    swift_model = Swift.prepare_model(model, config)  # ... stage 2: LoRA on LLM + projector
    _perturb(swift_model)
    with torch.no_grad():
        expected = swift_model(**x).logits
    swift_model.save_pretrained(str(tmp_path))

    base, _ = llava()
    base.load_state_dict(stage1)
    reloaded = Swift.from_pretrained(base, str(tmp_path))
    assert isinstance(reloaded, SwiftModel)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**x).logits, expected)


def test_per_part_learning_rates_reach_the_optimizer():
    from swiftlite.train import make_optimizer, train

    model, x = llava()
    swift_model = mm.prepare_lora_llm(model, r=2)
    groups = mm.multimodal_param_groups(swift_model, lr=1e-3, vit_lr=1e-5, aligner_lr=1e-4)
    owner = mm.part_of(swift_model)
    for g in groups:
        assert {owner[id(p)] for p in g["params"]} == {g["part"]}
        assert g["lr"] == {"vision_tower": 1e-5, "aligner": 1e-4, "language_model": 1e-3}[g["part"]]
    assert [g["part"] for g in groups] == ["vision_tower", "aligner", "language_model"]  # ms-swift's order
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in swift_model.parameters())
    opt = make_optimizer(swift_model, 1e-3, param_groups=groups)
    assert sorted(g["lr"] for g in opt.param_groups) == [1e-5, 1e-4, 1e-3]
    before = {n: p.detach().clone() for n, p in swift_model.named_parameters() if p.requires_grad}
    history = train(swift_model, lambda i: x, lambda m, b: m(**b).logits.pow(2).mean(), steps=2,
                    lr_schedule="constant", progress=False, param_groups=groups)
    assert len(history.loss) == 2
    moved = {n for n, p in swift_model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert any("vision_tower" in n for n in moved) and any("multi_modal_projector" in n for n in moved)
    with pytest.raises(ValueError, match="vit_lr"):
        mm.multimodal_param_groups(swift_model, lr=1e-3, vit_lr=0.0)


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoTokenizer, ViTImageProcessor

    from swiftlite import zoo
    from swiftlite.llm.image_sft import llava_processor

    tokenizer = AutoTokenizer.from_pretrained(zoo.path("llama-tiny", quick=True, progress=False))
    image_processor = ViTImageProcessor(do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return llava_processor(tokenizer, image_processor, patch_size=4)


def test_image_tokens_expand_and_are_never_scored(processor):
    from swiftlite.data.vqa import vqa_dataset
    from swiftlite.llm.image_sft import ImageSFTCollator, build_image_sft_dataset, encode_image_example

    records = vqa_dataset(6, image_size=16, seed=3)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    row = records[0]
    enc = encode_image_example(processor, row["question"], row["answer"], np.asarray(row["image"], np.uint8))
    ids, labels = np.array(enc["input_ids"]), np.array(enc["labels"])
    assert (ids == image_id).sum() == (16 // 4) ** 2  # one token per patch (CLS dropped by "default")
    assert (labels[ids == image_id] == -100).all()
    answer_ids = processor.tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
    scored = labels[labels != -100].tolist()
    assert scored == answer_ids + [processor.tokenizer.eos_token_id]  # the response and eos only
    # a prompt without the tag gets one in front (as ms-swift does); two tags for one image are refused
    assert encode_image_example(processor, f"<image>\n{row['question']}", row["answer"], row["image"]) == enc
    with pytest.raises(ValueError, match="exactly one"):
        encode_image_example(processor, "<image><image>?", "x", row["image"])
    data = build_image_sft_dataset(records, processor)
    batch = ImageSFTCollator(processor.image_processor, processor.tokenizer.pad_token_id)([data[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 16, 16)
    assert (batch["labels"][batch["input_ids"] == image_id] == -100).all()


def test_vqa_scenes_answers_are_consistent_with_captions():
    from swiftlite.data.vqa import NUMBERS, QTYPES, vqa_dataset

    records = vqa_dataset(60, image_size=32, seed=5)
    assert set(records["qtype"]) == set(QTYPES)
    for row in records:
        parts = row["caption"].split(" and ")
        assert len(parts) == row["n_objects"]
        if row["qtype"] == "count":
            assert row["answer"] == NUMBERS[row["n_objects"]]
        if row["qtype"] in ("colour", "shape"):
            where = row["question"].split("shape ")[-1].rstrip("?") if row["qtype"] == "colour" else \
                row["question"].split("is ")[-1].rstrip("?")
            assert any(p.endswith(where) and row["answer"] in p.split() for p in parts)
    with pytest.raises(ValueError, match="qtypes"):
        vqa_dataset(2, qtypes=("colours",))


def test_llava_tiny_quick_build_is_a_real_llava_with_real_figures(monkeypatch):
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration, LlavaProcessor, ViTForImageClassification

    from swiftlite import zoo
    from swiftlite.data.vqa import vqa_dataset
    from swiftlite.llm.image_sft import vqa_accuracy
    from swiftlite.zoo import llava as recipe

    monkeypatch.setenv("SWIFTLITE_QUICK", "1")
    model, proc = zoo.load("llava-tiny", progress=False)
    assert isinstance(model, LlavaForConditionalGeneration) and isinstance(proc, LlavaProcessor)
    stamp = zoo.figures("llava-tiny")
    p = stamp["params"]
    size = model.config.vision_config.image_size
    test = vqa_dataset(p["n_test"], image_size=size, seed=p["seed"] + 10_000, max_objects=p["max_objects"])
    scores = vqa_accuracy(model, proc, test)  # recomputed from the saved weights
    for key, value in scores.items():
        assert value == pytest.approx(stamp["figures"][f"vqa_accuracy_{key}"], abs=1e-9)
    # the vision tower is vit-tiny's encoder, untouched by both stages (freeze_vit=True)
    vit = ViTForImageClassification.from_pretrained(zoo.path("vit-tiny", progress=False))
    for name, tensor in vit.vit.state_dict().items():
        torch.testing.assert_close(model.model.vision_tower.state_dict()[name], tensor)
    # stage 2 moved the projector on from its stage-1 weights
    stage1 = load_file(str(zoo.path("llava-tiny", progress=False) / recipe.STAGE1_ALIGNER))
    assert set(stage1) == {n for n, _ in model.named_parameters() if "multi_modal_projector" in n}
    assert any(not torch.equal(stage1[n], t) for n, t in model.named_parameters() if n in stage1)
    fig = recipe.vqa_figure(stamp)
    bars = [p.get_width() for p in fig.axes[0].patches]
    assert bars[-4:] == [stamp["figures"][f"vqa_accuracy_{q}"] for q in ("colour", "shape", "count", "position")]


def test_readme_multimodal_example_runs(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("SWIFTLITE_QUICK", "1")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", readme, re.S) if "multimodal_target_regex" in c)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    tuned, groups = namespace["tuned"], namespace["groups"]
    lora = {n.split(".lora_A")[0] for n, _ in tuned.base_model.named_parameters() if "lora_A" in n}
    assert lora and all(n.startswith(("model.language_model.", "model.multi_modal_projector.")) for n in lora)
    assert any(n.startswith("model.multi_modal_projector.") for n in lora)
    assert {g["part"]: g["lr"] for g in groups} == {"language_model": 1e-4, "aligner": 1e-3}


def test_shipped_llava_tiny_stamp_matches_the_readme():
    import json
    from pathlib import Path

    from swiftlite import zoo

    root = Path(__file__).resolve().parents[1]
    stamp = json.loads((root / "swiftlite/zoo/shipped/llava-tiny/zoo_stamp.json").read_text())
    assert stamp["recipe_hash"] == zoo.get_recipe("llava-tiny").hash(False)  # the shipped build is the current recipe
    fig = stamp["figures"]
    row = next(line for line in (root / "README.md").read_text().splitlines() if line.startswith("| `llava-tiny` |"))
    for key in ("all", "colour", "count", "position", "shape"):
        assert f"**{round(100 * fig[f'vqa_accuracy_{key}'])} %**" in row
        if key != "all":
            assert fig[f"vqa_accuracy_{key}"] > fig[f"majority_baseline_{key}"]
    baselines = " / ".join(str(round(100 * fig[f"majority_baseline_{q}"])) for q in ("colour", "count", "position", "shape"))
    assert f"{baselines} %" in row
