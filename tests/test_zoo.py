"""Tests for swiftlite.zoo with the quick recipes (SWIFTLITE_QUICK=1; built once, then cached).

Each backbone is loaded through the plain transformers / diffusers class, and its stamped quality
figures are recomputed here from the saved weights, so a figure cannot be made up.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from swiftlite import zoo
from swiftlite.zoo import hub


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("SWIFTLITE_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_registry_and_hashes():
    assert {"vit-tiny", "llama-tiny", "unet-tiny"} <= set(zoo.names())
    r = zoo.get_recipe("vit-tiny")
    assert r.hash(True) != r.hash(False)
    assert r.hash(True) == zoo.get_recipe("vit-tiny").hash(True)  # stable
    assert zoo.quick_mode() is True and zoo.quick_mode(False) is False
    with pytest.raises(KeyError, match="vit-tiny"):
        zoo.get_recipe("vit-tine")


def test_vit_loads_with_transformers_and_figure_is_real():
    from transformers import ViTForImageClassification

    from swiftlite.data import shapes_dataset
    from swiftlite.zoo import vit

    directory = zoo.path("vit-tiny")
    stamp = zoo.read_stamp(directory)
    assert stamp["recipe_hash"] == zoo.get_recipe("vit-tiny").hash(True) and stamp["quick"] is True
    model = ViTForImageClassification.from_pretrained(directory).eval()
    assert model.config.id2label[0] == "circle"
    p = stamp["params"]
    test = shapes_dataset(p["n_test"], image_size=p["image_size"], seed=p["seed"] + 10_000, styles=p["styles"],
                          maps=False).with_format("numpy")[:]
    acc = vit.accuracy(model, test["image"].astype(np.uint8), test["shape"])
    assert acc == pytest.approx(stamp["figures"]["heldout_accuracy"], abs=1e-9)
    loaded = zoo.load("vit-tiny")
    x = torch.randn(2, 3, p["image_size"], p["image_size"])
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=x).logits, model(pixel_values=x).logits)


def test_llama_loads_with_transformers_and_beats_unigram():
    from transformers import AutoTokenizer, LlamaForCausalLM

    from swiftlite.data.text import text_corpus
    from swiftlite.zoo import llama

    directory = zoo.path("llama-tiny")
    stamp = zoo.read_stamp(directory)
    model = LlamaForCausalLM.from_pretrained(directory).eval()
    tok = AutoTokenizer.from_pretrained(directory)
    p = stamp["params"]
    corpus = text_corpus(p["corpus"], max_chars=p["max_chars"])
    train_blocks = llama.token_blocks(corpus["train"]["text"], tok, p["block_size"])
    test_blocks = llama.token_blocks(corpus["test"]["text"], tok, p["block_size"])
    order = np.random.default_rng(p["seed"]).permutation(len(test_blocks))[:p["eval_blocks"]]
    figures = llama.perplexities(model, train_blocks, [test_blocks[i] for i in order], len(tok))
    assert figures["perplexity"] == pytest.approx(stamp["figures"]["perplexity"], rel=1e-4)
    # even the seconds-long quick model must beat the best context-free (unigram) model
    assert figures["perplexity"] < figures["unigram_perplexity"]
    lm, tok2 = zoo.load("llama-tiny")
    ids = tok2("Return the", return_tensors="pt")["input_ids"]
    out = lm.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 5)


def test_unet_components_load_with_diffusers_and_pipeline_accepts_any_module():
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    from swiftlite.zoo.pipeline import TinyDiffusionPipeline
    from swiftlite.zoo.unet import load_judge

    directory = zoo.path("unet-tiny")
    stamp = zoo.read_stamp(directory)
    unet = UNet2DConditionModel.from_pretrained(directory, subfolder="unet").eval()
    assert unet.config.sample_size == 16 and unet.config.in_channels == 3  # pixel space
    scheduler = DDPMScheduler.from_pretrained(directory, subfolder="scheduler")
    assert scheduler.config.prediction_type == "v_prediction"
    CLIPTextModel.from_pretrained(directory, subfolder="text_encoder")
    figures = stamp["figures"]
    for key in ("prompt_match", "shape_match", "colour_match", "judge_shape_accuracy", "judge_colour_accuracy"):
        assert 0.0 <= figures[key] <= 1.0
    assert figures["n_samples"] > 0

    pipe = zoo.load("unet-tiny")
    assert isinstance(pipe, TinyDiffusionPipeline)
    prompts = ["a red circle at the top left", "a blue square in the center"]
    a = pipe(prompts, num_inference_steps=4, seed=1)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, pipe(prompts, num_inference_steps=4, seed=1))  # seeded

    class Wrapped(torch.nn.Module):  # any nn.Module returning a tuple works
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, t, encoder_hidden_states):
            return (self.inner(x, t, encoder_hidden_states=encoder_hidden_states).sample,)

    wrapped = TinyDiffusionPipeline(Wrapped(pipe.unet), pipe.scheduler, pipe.text_encoder, pipe.tokenizer, 16)
    assert np.array_equal(a, wrapped(prompts, num_inference_steps=4, seed=1))
    # a module modified in place (here: a hook on the first conv) changes the samples
    handle = pipe.unet.conv_in.register_forward_hook(lambda m, i, o: o * 0.0)
    try:
        assert not np.array_equal(a, pipe(prompts, num_inference_steps=4, seed=1))
    finally:
        handle.remove()
    judge = load_judge(directory)
    shapes, colours = judge.predict(a)
    assert len(shapes) == len(colours) == 2


def test_shipped_dir_is_used_only_when_hash_matches(tmp_path, monkeypatch):
    src = zoo.path("vit-tiny")  # the (cached) quick build
    monkeypatch.setenv("SWIFTLITE_CACHE", str(tmp_path / "cache"))  # an empty cache
    shipped = tmp_path / "shipped"
    monkeypatch.setattr(hub, "SHIPPED", shipped)
    shutil.copytree(src, shipped / "vit-tiny")
    stamp_file = shipped / "vit-tiny" / "zoo_stamp.json"
    stamp = json.loads(stamp_file.read_text())
    stamp["recipe_hash"] = zoo.get_recipe("vit-tiny").hash(False)  # pretend it is the full build
    stamp_file.write_text(json.dumps(stamp))
    assert zoo.path("vit-tiny", quick=False) == shipped / "vit-tiny"
    stamp["recipe_hash"] = "stale"
    stamp_file.write_text(json.dumps(stamp))
    with pytest.raises(FileNotFoundError, match="swiftlite zoo build vit-tiny"):
        zoo.path("vit-tiny", quick=False, build_if_missing=False)


def test_cli_list(capsys):
    from swiftlite.cli import main

    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "vit-tiny" in out and "unet-tiny" in out
