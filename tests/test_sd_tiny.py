"""sd-tiny: the 32-px scenes world, diffusers' own StableDiffusionPipeline from the zoo (quick build, cached per
session), its stamped figures recomputed from the saved weights, the zero-init channel widening, every
swiftlite.diffusion entry point on its latents, and the same code on an SD-v1.5-shaped pipeline."""

import numpy as np
import pytest
import torch

from swiftlite import zoo
from swiftlite.data import scenes
from swiftlite.data.shapes import render, sample_content


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def sd_dir():
    mp = pytest.MonkeyPatch()
    mp.setenv("SWIFTLITE_QUICK", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield zoo.path("sd-tiny", progress=False)
    mp.undo()


@pytest.fixture
def pipe(sd_dir):
    from swiftlite.zoo import sd

    return sd.load(sd_dir)


# ---------------------------------------------------------------------------------------------- scenes world
def test_one_object_scene_is_the_shapes_render_and_caption_names_every_factor():
    rng = np.random.default_rng(0)
    content = sample_content(rng, 32, positions=("top left",), backgrounds=("white",))
    out = scenes.render_scene([(content, "stripes")], 32)
    ref = render(content, "stripes", 32)
    assert all(np.array_equal(out[k], ref[k]) for k in ref)
    caption = scenes.scene_caption([(content, "stripes")], "white")
    assert caption == f"a {content.size} {content.colour} striped {content.shape} at the top left on a white background"
    assert scenes.scene_caption([(content, "plain")], "black") == f"a {content.size} {content.colour} {content.shape} at the top left"


def test_scenes_dataset_second_object_maps_and_seeding():
    ds = scenes.scenes_dataset(40, seed=1, p_second=1.0)
    center = ds.features["position"].str2int("center")  # no cell is two away from the center: alone there
    for n, caption, position in zip(ds["n_objects"], ds["caption"], ds["position"]):
        assert (n, " and a " in caption) == ((1, False) if position == center else (2, True))
    first = scenes.scenes_dataset(40, seed=1, p_second=0.0, maps=True).with_format("numpy")
    assert set(first["n_objects"]) == {1} and first[0]["image"].shape == (32, 32, 3)
    row = ds.with_format("numpy")[0]
    assert row["mask"].sum() > 0 and row["depth"].shape == (32, 32)
    assert scenes.far_positions("top left", list(scenes.GRID)) == ["top right", "right", "bottom left", "bottom",
                                                                   "bottom right"]
    again = scenes.scenes_dataset(40, seed=1, p_second=1.0)
    assert again["caption"] == ds["caption"]
    with pytest.raises(ValueError, match="styles"):
        scenes.scenes_dataset(2, styles=("ink",))


def test_clip_tokenizer_keeps_every_scene_word_whole():
    from transformers import CLIPTokenizer

    from swiftlite.zoo.sd import clip_tokenizer

    tok = clip_tokenizer(32)
    assert isinstance(tok, CLIPTokenizer)
    for word in scenes.scene_words():
        assert tok.tokenize(word) == [word + "</w>"], word


# ---------------------------------------------------------------------------------------------- the zoo model
def test_sd_tiny_is_a_stable_diffusion_pipeline_with_sd15_blocks(pipe, sd_dir, tmp_path):
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    assert type(pipe) is StableDiffusionPipeline and pipe.safety_checker is None
    assert isinstance(pipe.vae, AutoencoderKL) and isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    cfg = pipe.unet.config
    assert list(cfg.down_block_types) == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert list(cfg.up_block_types) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert cfg.mid_block_type == "UNetMidBlock2DCrossAttn" and cfg.in_channels == 4
    assert cfg.sample_size * pipe.vae_scale_factor == 32
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = pipe("a red circle at the top left", num_inference_steps=2, generator=gen(), output_type="np").images
    assert a.shape == (1, 32, 32, 3)
    pipe.save_pretrained(tmp_path / "copy")
    again = StableDiffusionPipeline.from_pretrained(tmp_path / "copy", safety_checker=None)
    again.set_progress_bar_config(disable=True)
    b = again("a red circle at the top left", num_inference_steps=2, generator=gen(), output_type="np").images
    assert np.allclose(a, b, atol=1e-5)


def test_sd_tiny_stamped_figures_are_recomputed_from_the_saved_weights(pipe, sd_dir):
    from swiftlite.data.scenes import scenes_dataset
    from swiftlite.zoo import sd

    stamp = zoo.read_stamp(sd_dir)
    assert stamp["quick"] is True and stamp["recipe_hash"] == zoo.get_recipe("sd-tiny").hash(True)
    p, f = stamp["params"], stamp["figures"]
    judge = sd.load_judge(sd_dir)
    test = scenes_dataset(p["n_vae_eval"], image_size=32, seed=p["seed"] + 30_000, maps=False, p_second=0.0,
                          **sd._world(p))
    real = np.asarray(test.with_format("numpy")["image"], dtype=np.uint8)
    recon = sd.decode_latents(pipe.vae, sd.encode_latents(pipe.vae, real))
    mse = float(np.mean(((recon.astype(np.float32) - real) / 255.0) ** 2))
    assert mse == pytest.approx(f["vae_recon_mse"], rel=1e-4)
    prompts, wanted = sd.eval_prompts(p, p["n_eval_prompts"], p["seed"] + 40_000)
    samples = sd.sample_prompts(pipe, prompts, steps=p["sampling_steps"], guidance_scale=p["guidance_scale"],
                                seed=p["seed"])
    got = sd.adherence(samples, wanted, judge)
    for key in ("prompt_match", "shape_match", "colour_match", "position_match", "style_match"):
        assert got[key] == pytest.approx(f[key], abs=1e-9), key
    assert f["n_samples"] == len(prompts) and set(judge.labels) == {"shape", "colour", "position", "style", "size"}


def test_text_stage_heads_learn_and_the_encoder_stays_frozen_while_the_unet_trains(pipe, sd_dir):
    """Stage 3 rerun alone (deterministic, one thread) gives the quick build's text encoder exactly: the
    U-Net stage did not move it. Its heads name every factor well above chance on held-out captions."""
    from swiftlite.zoo import sd

    p = zoo.read_stamp(sd_dir)["params"]
    tokenizer = pipe.tokenizer  # the build's own: a retrained BPE may number the tokens differently
    captions = sd.caption_dataset(p, 64, 7, tokenizer)
    two = [r for r in captions if r["end_2"] > 0]
    assert two and len(two) < 64  # some captions name a second object, some do not
    for row in captions:  # each object's token index points at the last word of its phrase
        words = tokenizer.convert_ids_to_tokens(row["input_ids"])
        position = sd.factor_values(p)["position"][row["position_1"]]
        assert words[row["end_1"]] == position.split()[-1] + "</w>"
    _, text_encoder, _, _ = sd.make_models(p, tokenizer)
    before = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    _, history, accuracy = sd.pretrain_text_encoder(text_encoder, tokenizer, p)
    assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5])
    values = sd.factor_values(p)
    for factor in ("shape", "colour", "position", "style"):
        assert accuracy[f"token_{factor}"] > 2.0 / len(values[factor]), (factor, accuracy)
    shipped = pipe.text_encoder.state_dict()
    trained = text_encoder.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)  # the stage moved it ...
    for k, v in trained.items():  # ... and the shipped (float16) encoder is exactly the stage's output
        assert torch.equal(shipped[k], v.half().float()), k


# ---------------------------------------------------------------------------------------------- widening
@pytest.mark.parametrize("channels", [8, 9])
def test_widened_conv_in_leaves_the_output_unchanged_at_init(pipe, channels):
    from swiftlite.diffusion import widen_conv_in

    wide = widen_conv_in(pipe.unet, channels)
    assert wide.config.in_channels == channels and pipe.unet.config.in_channels == 4  # a copy
    assert torch.count_nonzero(wide.conv_in.weight[:, 4:]) == 0
    torch.manual_seed(0)
    z, extra = torch.randn(2, 4, 8, 8), torch.randn(2, channels - 4, 8, 8)
    ctx = torch.randn(2, pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size)
    with torch.no_grad():
        before = pipe.unet(z, 500, encoder_hidden_states=ctx).sample
        after = wide(torch.cat([z, extra], 1), 500, encoder_hidden_states=ctx).sample
    assert torch.allclose(before, after, atol=1e-5)
    with torch.no_grad():  # and it does read the new channels once they are trained
        wide.conv_in.weight[:, 4:] += 0.1
        assert not torch.allclose(wide(torch.cat([z, extra], 1), 500, encoder_hidden_states=ctx).sample, before, atol=1e-3)
    with pytest.raises(ValueError, match="in_channels=4 must exceed"):
        widen_conv_in(pipe.unet, 4)


def test_widened_unets_run_in_diffusers_edit_and_inpaint_pipelines(pipe):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionInstructPix2PixPipeline

    from swiftlite.data.scenes import scenes_dataset
    from swiftlite.diffusion import inpaint_pipeline, instruct_pix2pix_pipeline

    row = scenes_dataset(1, seed=3).with_format("numpy")[0]
    image = torch.as_tensor(row["image"]).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, 32, 32) in [0, 1]
    mask = torch.as_tensor(row["mask"])[None, None].float()  # (1, 1, 32, 32)
    edit = instruct_pix2pix_pipeline(pipe)
    assert type(edit) is StableDiffusionInstructPix2PixPipeline and edit.unet.config.in_channels == 8
    out = edit("fill it with diagonal stripes", image=image, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()
    inpaint = inpaint_pipeline(pipe)
    assert type(inpaint) is StableDiffusionInpaintPipeline and inpaint.unet.config.in_channels == 9
    out = inpaint("a blue square in the center", image=image, mask_image=mask, num_inference_steps=2, height=32,
                  width=32, output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


# ---------------------------------------------------------------------------------------------- swiftlite.diffusion
def test_loss_encodes_images_with_the_vae_and_tuners_train_on_latents(sd_dir):
    from swiftlite import Swift
    from swiftlite.diffusion import TextToImageLoss, sample, sc_tuner_config, text_to_image_dataset
    from swiftlite.train import train
    from swiftlite.tuners import LoRAConfig
    from swiftlite.zoo import sd

    for name in ("sc", "lora"):
        pipe = sd.load(sd_dir)  # fresh weights for each tuner
        data = text_to_image_dataset(pipe.tokenizer, 4, image_size=32)
        loss_fn = TextToImageLoss.for_pipeline(pipe)
        assert loss_fn.vae is pipe.vae and loss_fn.clean_sample(data[:2]).shape == (2, 4, 8, 8)
        config = sc_tuner_config(pipe.unet) if name == "sc" else LoRAConfig(r=2, target_modules=r".*attn\d\.to_q")
        model = Swift.prepare_model(pipe.unet, config)
        seen = []
        handle = model.base_model.conv_in.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
        history = train(model, data, loss_fn, steps=2, batch_size=2, lr=1e-3, progress=False)
        handle.remove()
        assert np.isfinite(history.loss).all() and seen[0] == (2, 4, 8, 8)  # the U-Net sees latents, not pixels
        images = sample(pipe, ["a red circle at the top"], unet=model, num_inference_steps=2)
        assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8


def test_sample_and_metrics_on_sd_tiny(pipe, sd_dir):
    from swiftlite.diffusion import prompt_adherence, sample
    from swiftlite.zoo import sd

    decoded = sample(pipe, ["a green square in the center"], num_inference_steps=3, output_type="pt")
    assert decoded.shape == (1, 3, 32, 32) and decoded.abs().max() <= 1  # decoded by the VAE, not latents
    images = sample(pipe, ["a green square in the center"] * 2, num_inference_steps=3, seed=1)
    assert np.array_equal(images, sample(pipe, ["a green square in the center"] * 2, num_inference_steps=3, seed=1))
    scores = prompt_adherence(images, ["square"] * 2, ["green"] * 2, sd.load_judge(sd_dir))
    assert set(scores) == {"prompt_match", "shape_match", "colour_match"}


def test_controlnet_and_csc_condition_sd_tiny(pipe):
    from swiftlite import Swift
    from swiftlite.data.scenes import scenes_dataset
    from swiftlite.diffusion import sample
    from swiftlite.diffusion.controlnet import ControlNetUNet
    from swiftlite.tuners import SCETuningConfig
    from swiftlite.tuners.scetuning_condition import scetuning_condition

    masks = torch.as_tensor(np.asarray(scenes_dataset(2, seed=5).with_format("numpy")["mask"])).float()  # (2, 32, 32)
    controlled = ControlNetUNet(pipe.unet, conditioning_embedding_out_channels=(16, 32, 32))  # 32 px -> 8×8 latent
    with controlled.conditioned(masks):
        images = sample(pipe, ["a red circle"] * 2, unet=controlled, num_inference_steps=2)
    assert images.shape == (2, 32, 32, 3)
    from swiftlite.diffusion import UP_RESNETS, sc_tuner_config

    pipe.unet.requires_grad_(True)
    csc = Swift.prepare_model(pipe.unet, SCETuningConfig(dims=sc_tuner_config(pipe.unet).dims, target_modules=UP_RESNETS,
                                                         condition_channels=1, condition_dims=[8, 16]))
    latent_masks = torch.nn.functional.interpolate(masks[:, None], size=8, mode="area")  # at the latent's resolution
    with scetuning_condition(csc, latent_masks):
        images = sample(pipe, ["a red circle"] * 2, unet=csc, num_inference_steps=2)
    assert images.shape == (2, 32, 32, 3)


def test_sc_tuner_backward_stops_at_the_skips_of_sd_tiny(sd_dir):
    """What SCEdit's memory claim rests on, on sd-tiny's latents (the full comparison with matched budgets:
    benchmarks/sd_tiny.py): under SC-Tuner no encoder output needs a gradient, under LoRA they do."""
    from swiftlite import Swift
    from swiftlite.diffusion import TextToImageLoss, sc_tuner_config, text_to_image_dataset
    from swiftlite.diffusion.memory import ATTENTION_AND_CONV, saved_bytes_by_region
    from swiftlite.tuners import LoRAConfig
    from swiftlite.zoo import sd

    saved = {}
    for name in ("sc", "lora"):
        pipe = sd.load(sd_dir)
        batch = text_to_image_dataset(pipe.tokenizer, 4, image_size=32)[:4]
        config = sc_tuner_config(pipe.unet) if name == "sc" else LoRAConfig(r=2, target_modules=ATTENTION_AND_CONV)
        model = Swift.prepare_model(pipe.unet, config)
        saved[name] = saved_bytes_by_region(model, model.base_model, TextToImageLoss.for_pipeline(pipe), batch)
    assert not saved["sc"]["encoder_outputs_need_grad"] and saved["lora"]["encoder_outputs_need_grad"]
    assert saved["sc"]["saved"].get("encoder", 0) < saved["lora"]["saved"]["encoder"]


# ---------------------------------------------------------------------------------------------- same code, real weights
def test_same_code_runs_on_an_sd15_shaped_pipeline():
    from diffusers import StableDiffusionPipeline

    from swiftlite import Swift
    from swiftlite.diffusion import TextToImageLoss, sample, sc_tuner_config, text_to_image_dataset
    from swiftlite.train import train
    from swiftlite.zoo.sd import SD15_UNET, sd15_shaped_pipeline

    pipe = sd15_shaped_pipeline()  # random weights, SD v1.5's configs with widths scaled down
    assert type(pipe) is StableDiffusionPipeline and pipe.tokenizer.model_max_length == 77
    assert pipe.unet.config.block_out_channels == tuple(c // 10 for c in SD15_UNET["block_out_channels"])
    assert pipe.unet.config.layers_per_block == 2 and pipe.vae.config.scaling_factor == 0.18215
    model = Swift.prepare_model(pipe.unet, sc_tuner_config(pipe.unet))
    data = text_to_image_dataset(pipe.tokenizer, 2, image_size=64)
    history = train(model, data, TextToImageLoss.for_pipeline(pipe), steps=1, batch_size=2, progress=False)
    assert np.isfinite(history.loss).all()
    images = sample(pipe, ["a red circle at the top"], unet=model, num_inference_steps=2)
    assert images.shape == (1, 64, 64, 3)
