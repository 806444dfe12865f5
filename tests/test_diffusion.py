"""swiftlite.diffusion: the loss target follows the scheduler, sampling is seeded and condition-aware,
Swift-tuned U-Nets train on the shared trainer, and the metrics measure what they claim."""
import contextlib

import numpy as np
import pytest
import torch

import swiftlite.zoo as zoo
from swiftlite import Swift
from swiftlite.data.shapes import shapes_dataset
from swiftlite.diffusion import (TextToImageLoss, edge_agreement, mask_edges, mask_iou, object_mask, prompt_adherence,
                                 sample, sample_grid, sc_tuner_config, style_accuracy, style_classifier,
                                 text_to_image_dataset)
from swiftlite.train import train

PROMPTS = ["a red circle at the top left", "a blue square in the center"]


@pytest.fixture(scope="module")
def pipe():
    return zoo.load("unet-tiny", quick=True, progress=False)


class RecordingUNet(torch.nn.Module):
    """Predicts zeros and keeps its inputs, so the loss equals mean(target²) and x_t can be inspected."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, encoder_hidden_states):
        self.seen = (x_t, t)
        return torch.zeros_like(x_t) + self.weight


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_loss_target_follows_the_schedulers_prediction_type(pipe, prediction_type):
    """Recover ε from x_t = √ᾱ x₀ + √(1−ᾱ) ε and check the loss against the paper's target, per type."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    data = text_to_image_dataset(pipe.tokenizer, 4, shapes=["circle"], sizes=["large"], backgrounds=["black"])
    batch = data[:4]
    unet = RecordingUNet()
    loss = TextToImageLoss(scheduler, text_encoder=pipe.text_encoder)(unet, batch)
    x_t, t = unet.seen
    x0 = batch["image"].permute(0, 3, 1, 2).float() / 127.5 - 1
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    target = {"epsilon": eps, "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0, "sample": x0}[prediction_type]
    assert torch.allclose(loss, target.pow(2).mean(), rtol=1e-4)
    assert eps.std() > 0.5  # ε really is the Gaussian noise (x₀ alone would give a small std here)


def test_unknown_prediction_type_is_refused(pipe):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type='flow'"):
        TextToImageLoss(scheduler, text_encoder=pipe.text_encoder)
    with pytest.raises(ValueError, match="empty_ids"):
        TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, p_uncond=0.1)


def test_timesteps_are_uniform_over_the_training_range(pipe):
    unet, loss_fn = RecordingUNet(), TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder)
    batch = text_to_image_dataset(pipe.tokenizer, 64, shapes=["circle"])[:]
    ts = []
    for _ in range(8):
        loss_fn(unet, batch)
        ts.append(unet.seen[1])
    ts = torch.cat(ts).float()
    assert ts.min() >= 0 and ts.max() < pipe.scheduler.config.num_train_timesteps
    assert abs(ts.mean().item() - 499.5) < 60 and ts.max() > 900 and ts.min() < 100


def test_dataset_columns_and_captions(pipe):
    data = text_to_image_dataset(pipe.tokenizer, 6, style="stripes", condition_columns=["mask", "edges"],
                                 keep_columns=["shape"], shapes=["square"])
    assert data.column_names == ["image", "mask", "edges", "shape", "input_ids"]
    assert data[0]["input_ids"].shape == (pipe.tokenizer.model_max_length,)
    assert "square" in pipe.tokenizer.decode(data[0]["input_ids"], skip_special_tokens=True)
    with pytest.raises(ValueError, match="condition_columns"):
        text_to_image_dataset(pipe.tokenizer, 2, condition_columns=["image"])


class ExtraChannelsUNet(torch.nn.Module):
    """The zoo U-Net behind ``extra_inputs`` (channels 3:) and a ``unet_kwargs`` knob: x[:, :3] + shift · x[:, 3:]."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, encoder_hidden_states, shift=0.0):
        return self.unet(x[:, :3] + shift * x[:, 3:], t, encoder_hidden_states=encoder_hidden_states)


def test_guidance_is_one_loop_that_follows_the_equation(pipe, monkeypatch):
    """Reference: DDIM written out with the conditional and unconditional predictions as two separate
    calls, f̂ = f(∅) + w (f(c) − f(∅)). sample() (one batch of 2B rows) and the zoo pipeline (which
    calls sample) must give the same images, extra_inputs and unet_kwargs included."""
    from swiftlite.diffusion import make_scheduler, unet_output

    unet, w, steps, seed = ExtraChannelsUNet(pipe.unet), 2.5, 4, 5
    extra = torch.linspace(-1, 1, 2 * 16 * 16).reshape(2, 1, 16, 16)
    sched = make_scheduler(pipe.scheduler, "ddim")
    sched.set_timesteps(steps)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPTS), pipe.encode_prompt(["", ""])
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * sched.init_noise_sigma
        for t in sched.timesteps:
            x_in = torch.cat([x, extra], dim=1)
            f_c = unet_output(unet(x_in, t, encoder_hidden_states=cond, shift=0.3))
            f_u = unet_output(unet(x_in, t, encoder_hidden_states=uncond, shift=0.3))
            x = sched.step(f_u + w * (f_c - f_u), t, x).prev_sample
    reference = x.clamp(-1, 1)
    got = sample(pipe, PROMPTS, unet=unet, num_inference_steps=steps, guidance_scale=w, seed=seed, extra_inputs=extra,
                 unet_kwargs={"shift": 0.3}, output_type="pt")
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)
    without_extra = sample(pipe, PROMPTS, unet=unet, num_inference_steps=steps, guidance_scale=w, seed=seed,
                           extra_inputs=extra, output_type="pt")  # shift 0: the extra channels are ignored
    assert not torch.allclose(got, without_extra)  # so the kwargs and the extra channels did reach the U-Net

    calls = []
    import swiftlite.zoo.pipeline as zoo_pipeline

    monkeypatch.setattr(zoo_pipeline, "sample", lambda *a, **k: calls.append(k) or sample(*a, **k))
    pipe.unet, original = unet, pipe.unet
    try:
        via_pipe = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=w, seed=seed, extra_inputs=extra,
                        unet_kwargs={"shift": 0.3}, output_type="pt")
    finally:
        pipe.unet = original
    assert len(calls) == 1 and calls[0]["scheduler"] == "ddim"  # the pipeline has no loop of its own
    torch.testing.assert_close(via_pipe, got, atol=0, rtol=0)


def test_sampling_is_deterministic_for_a_seed_and_matches_the_zoo_pipeline(pipe):
    a = sample(pipe, PROMPTS, num_inference_steps=6, seed=3)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.uint8
    assert np.array_equal(a, sample(pipe, PROMPTS, num_inference_steps=6, seed=3))
    assert not np.array_equal(a, sample(pipe, PROMPTS, num_inference_steps=6, seed=4))
    assert np.array_equal(a, pipe(PROMPTS, num_inference_steps=6, seed=3))  # the zoo pipeline: DDIM through sample
    ddpm = sample(pipe, PROMPTS, scheduler="ddpm", num_inference_steps=6, seed=3)
    assert np.array_equal(ddpm, sample(pipe, PROMPTS, scheduler="ddpm", num_inference_steps=6, seed=3))
    assert not np.array_equal(ddpm, a)  # DDPM adds fresh noise every step (from the same seeded generator)
    from diffusers import EulerDiscreteScheduler

    euler = sample(pipe, PROMPTS, scheduler=EulerDiscreteScheduler, num_inference_steps=6, seed=3)  # any diffusers class
    assert euler.shape == a.shape and np.array_equal(euler, sample(pipe, PROMPTS, scheduler=EulerDiscreteScheduler,
                                                                   num_inference_steps=6, seed=3))
    with pytest.raises(ValueError, match="scheduler='euler'"):
        sample(pipe, PROMPTS, scheduler="euler")


def test_condition_reaches_the_callers_context_once_per_unet_batch(pipe):
    """The condition is handed to the context (doubled under guidance) and changes the samples only
    through what the context does with it."""
    seen = []

    @contextlib.contextmanager
    def add_to_input(condition):  # a toy controllable model: the condition is added to the U-Net input
        seen.append(condition.shape[0])
        handle = pipe.unet.conv_in.register_forward_pre_hook(lambda m, args: (args[0] + condition,))
        try:
            yield
        finally:
            handle.remove()

    cond = torch.zeros(2, 3, 16, 16)
    cond[:, :, :8] = 1.0
    base = sample(pipe, PROMPTS, num_inference_steps=4, seed=0)
    guided = sample(pipe, PROMPTS, num_inference_steps=4, seed=0, condition=cond, condition_context=add_to_input)
    plain = sample(pipe, PROMPTS, num_inference_steps=4, seed=0, guidance_scale=1.0, condition=cond,
                   condition_context=add_to_input)
    assert seen == [4, 2]  # [∅; c] halves under guidance, B rows without
    assert not np.array_equal(base, guided)
    assert np.array_equal(base, sample(pipe, PROMPTS, num_inference_steps=4, seed=0))  # hook removed on exit
    assert plain.shape == base.shape
    with pytest.raises(ValueError, match="condition_context"):
        sample(pipe, PROMPTS, condition=cond)


def _tuned(pipe, method):
    from swiftlite import LoRAConfig

    unet = type(pipe.unet).from_config(pipe.unet.config)
    unet.load_state_dict(pipe.unet.state_dict())
    if method == "full":
        return unet.train()
    if method == "sctuner":
        return Swift.prepare_model(unet, sc_tuner_config(unet, down_ratio=0.5))
    return Swift.prepare_model(unet, LoRAConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))


@pytest.mark.parametrize("method", ["sctuner", "lora", "full"])
def test_any_swift_tuned_unet_trains_on_the_shared_trainer(pipe, method):
    model = _tuned(pipe, method)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    text_before = [p.detach().clone() for p in pipe.text_encoder.parameters()]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    data = text_to_image_dataset(pipe.tokenizer, 32, style="stripes", shapes=["circle"], sizes=["large"],
                                 backgrounds=["black"])
    empty = pipe.tokenizer("", padding="max_length", max_length=pipe.tokenizer.model_max_length)["input_ids"]
    loss_fn = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, p_uncond=0.1, empty_ids=empty)
    history = train(model, data, loss_fn, steps=3, batch_size=8, lr=1e-3, progress=False)
    assert len(history.loss) == 3 and np.isfinite(history.loss).all()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert all(torch.equal(a, b) for a, b in zip(text_before, pipe.text_encoder.parameters()))  # frozen encoder
    assert all(p.grad is None for p in pipe.text_encoder.parameters())  # it ran under no_grad
    out = sample(pipe, PROMPTS[:1], unet=model, num_inference_steps=3)
    assert out.shape == (1, 16, 16, 3)


def test_sc_tuner_config_reads_the_skip_widths(pipe):
    from swiftlite.tuners.scetuning import unet_skip_widths

    config = sc_tuner_config(pipe.unet, down_ratio=0.25)
    assert config.dims == list(unet_skip_widths(pipe.unet).values()) and config.down_ratio == 0.25


@pytest.mark.parametrize("layout", ["unet-tiny", "sd-layout"])
def test_unet_skips_pair_each_encoder_output_with_the_resnet_that_concatenates_it(pipe, layout):
    from swiftlite.diffusion import sd_layout_unet, unet_skips

    unet = pipe.unet if layout == "unet-tiny" else sd_layout_unet(pipe.unet)
    skips = unet_skips(unet)
    produced, consumed, hooks = {}, {}, []
    for s in skips:  # record what each producer outputs and what each consumer resnet receives
        module = unet.get_submodule(s["producer"])
        hooks.append(module.register_forward_hook(
            lambda m, i, out, name=s["producer"]: produced.update({name: out[0] if isinstance(out, tuple) else out})))
        hooks.append(unet.get_submodule(s["consumer"]).register_forward_pre_hook(
            lambda m, args, name=s["consumer"]: consumed.update({name: args[0]})))
    side = unet.config.sample_size
    with torch.no_grad():
        unet(torch.randn(1, 3, side, side), torch.tensor([10]),
             encoder_hidden_states=torch.randn(1, 4, unet.config.cross_attention_dim))
    for h in hooks:
        h.remove()
    assert len(skips) == len(consumed) == len(unet_skip_widths_of(unet))
    for s in skips:
        skip = consumed[s["consumer"]][:, -s["channels"]:]  # the trailing channels of cat([hidden, skip])
        assert torch.equal(skip, produced[s["producer"]]), s
        assert skip.shape[-1] == side // 2 ** s["level"]


def unet_skip_widths_of(unet):
    from swiftlite.tuners.scetuning import unet_skip_widths

    return unet_skip_widths(unet)


def test_skip_flow_draws_every_skip_from_the_model(pipe):
    import matplotlib.pyplot as plt

    from swiftlite import SCETuningConfig
    from swiftlite.diffusion import skip_flow, unet_skips

    skips = unet_skips(pipe.unet)
    fig = skip_flow(pipe.unet, title="t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum(t.startswith("SC-Tuner") for t in texts) == len(skips)
    for s in skips:
        assert any(t.startswith(s["producer"] + "\n" + str(s["channels"]) + " ch") for t in texts), s
        assert s["consumer"] in texts
    plt.close(fig)
    config = SCETuningConfig(dims=[s["channels"] for s in reversed(skips)], target_modules=r"up_blocks\.\d+\.resnets\.\d+",
                             condition_channels=1, condition_dims=[8, 16])
    fig = skip_flow(pipe.unet, config)
    texts = [t.get_text() for t in fig.axes[0].texts]
    n_levels = max(s["level"] for s in skips) + 1
    assert [t.split("\n")[0] for t in texts if t.startswith("level ")] == \
        ["level 0: 1→8"] + [f"level {l}: {8 if l == 1 else 16}→16" for l in range(1, n_levels)]  # last width repeats
    assert sum(t.startswith("CSC-Tuner") for t in texts) == len(skips)
    plt.close(fig)


def test_object_mask_iou_and_edges_on_real_renders():
    data = shapes_dataset(40, image_size=16, seed=1, backgrounds=["black"], sizes=["large"]).with_format("numpy")[:]
    masks = object_mask(data["image"])
    assert mask_iou(masks, data["mask"]).mean() > 0.85
    assert edge_agreement(mask_edges(data["mask"]), data["edges"]).mean() > 0.95
    shifted = np.roll(data["mask"], 8, axis=-1)
    assert mask_iou(shifted, data["mask"]).mean() < 0.5
    assert edge_agreement(mask_edges(shifted), data["edges"]).mean() < 0.5
    empty = np.zeros((1, 16, 16), np.uint8)
    assert mask_iou(empty, empty)[0] == 1.0 and edge_agreement(empty, empty)[0] == 1.0
    square = np.zeros((1, 5, 5), np.uint8)
    square[0, 1:4, 1:4] = 1
    assert mask_edges(square).sum() == 8  # the 3×3 block's ring; its centre is inside
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(empty, square)


def test_style_classifier_is_cached_and_scores_real_styles(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTLITE_CACHE", str(tmp_path))
    classifier = style_classifier(quick=True)
    assert set(classifier.accuracy) == {"style", "shape", "colour"}
    assert len(list((tmp_path / "diffusion").iterdir())) == 1
    again = style_classifier(quick=True)  # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))
    real = shapes_dataset(60, image_size=16, seed=7, styles=["ink"], backgrounds=["black"]).with_format("numpy")[:]
    assert style_accuracy(real["image"], "ink", classifier) > 0.5  # chance is 1/6
    with pytest.raises(ValueError, match="unknown to the classifier"):
        style_accuracy(real["image"], "cubism", classifier)


def test_prompt_adherence_with_the_zoo_judge(pipe):
    from swiftlite.zoo.unet import load_judge

    judge = load_judge(zoo.path("unet-tiny", quick=True))
    data = shapes_dataset(48, image_size=16, seed=3, shapes=["circle", "square", "triangle"],
                          colours=["red", "green", "blue", "yellow"], sizes=["large"], backgrounds=["black"])
    shapes = [data.features["shape"].int2str(i) for i in data["shape"]]
    colours = [data.features["colour"].int2str(i) for i in data["colour"]]
    images = np.asarray(data.with_format("numpy")["image"])
    right = prompt_adherence(images, shapes, colours, judge)
    wrong = prompt_adherence(images, shapes[1:] + shapes[:1], colours[1:] + colours[:1], judge)
    assert right["prompt_match"] <= min(right["shape_match"], right["colour_match"])
    assert right["colour_match"] > wrong["colour_match"]


def test_sample_grid_figure():
    images = np.zeros((6, 16, 16, 3), np.uint8)
    fig = sample_grid({"SC-Tuner": images[:3], "LoRA": images[3:]}, col_titles=["a", "b", "c"])
    assert len(fig.axes) == 6
    fig = sample_grid(images, ncols=4)
    assert len(fig.axes) == 8


def test_score_samples_covers_every_prompt(pipe):
    from swiftlite.data import world_prompts
    from swiftlite.diffusion import StyleClassifier, score_samples
    from swiftlite.zoo.unet import load_judge

    prompts, shapes, colours = world_prompts(["circle", "square"], ["red", "blue"], per_prompt=2, seed=1)
    assert len(prompts) == 8 and prompts[0].startswith("a red circle") and shapes[0] == "circle" and colours[-1] == "blue"
    metrics, images = score_samples(pipe, "plain", judge=load_judge(zoo.path("unet-tiny", quick=True)),
                                    classifier=StyleClassifier(width=4), shapes=["circle", "square"],  # untrained
                                    colours=["red", "blue"], per_prompt=2, seed=1, num_inference_steps=3)
    assert images.shape == (8, 16, 16, 3)
    assert np.array_equal(images, sample(pipe, prompts, seed=1, num_inference_steps=3))  # same prompts, same seed
    assert set(metrics) == {"style_accuracy", "prompt_match", "shape_match", "colour_match"}


def test_loss_hands_condition_columns_to_the_callers_context(pipe):
    """The training loss uses the same condition contract as sampling: maps from the batch, as float
    (B, 1, H, W), entered around the U-Net call."""
    seen = []

    class Unet(RecordingUNet):
        def forward(self, x_t, t, encoder_hidden_states):
            seen.append(("unet", active[-1] if active else None))
            return super().forward(x_t, t, encoder_hidden_states)

    active = []

    @contextlib.contextmanager
    def hand_over(condition):
        active.append(condition)
        try:
            yield
        finally:
            active.pop()

    data = text_to_image_dataset(pipe.tokenizer, 4, condition_columns=["mask", "edges"], shapes=["circle"])
    batch = data[:4]
    loss_fn = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, condition_context=hand_over,
                              condition_columns=["mask", "edges"])
    loss_fn(Unet(), batch)
    (_, condition), = seen
    assert set(condition) == {"mask", "edges"} and not active  # entered for the call, left afterwards
    assert condition["mask"].shape == (4, 1, 16, 16) and condition["mask"].dtype == torch.float32
    assert torch.equal(condition["mask"][:, 0], batch["mask"].float())
    with pytest.raises(ValueError, match="together"):
        TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, condition_columns=["mask"])


def test_memory_breakdown_shows_backward_stops_at_the_skips(pipe):
    """SCEdit's memory claim, measured: with SC-Tuners the encoder saves nothing for backward and no
    encoder output needs a gradient; LoRA in the encoder saves activations there; the bars' parts add
    up to the measured peak; the U-Net handed in is left untouched."""
    from swiftlite.diffusion import TextToImageLoss, compare_memory, memory_figure, memory_report, text_to_image_dataset

    pipe.text_encoder.requires_grad_(False)
    data = text_to_image_dataset(pipe.tokenizer, 8, style="stripes", image_size=pipe.image_size, seed=0)
    loss_fn = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    result = compare_memory(pipe.unet, lambda: data[list(range(4))], loss_fn, steps=1, warmup=0, progress=False)
    sc, lora, lora_attention = result["rows"]
    assert sc["name"].startswith("SC-Tuner") and lora["name"].startswith("LoRA (attention + conv)")
    assert result["breakdown"][sc["name"]]["saved"].get("encoder", 0) == 0
    assert result["breakdown"][sc["name"]]["encoder_outputs_need_grad"] is False
    for row in (lora, lora_attention):
        assert result["breakdown"][row["name"]]["saved"]["encoder"] > 0
        assert result["breakdown"][row["name"]]["encoder_outputs_need_grad"] is True
    assert result["sc_over_lora"] == sc["peak_memory_bytes"] / lora["peak_memory_bytes"] < 1
    assert result["batch_size"] == 4
    for row in result["rows"]:  # measure's saved-for-backward = the breakdown's regions, added up
        assert row["memory_parts_bytes"]["saved for backward"] == sum(result["breakdown"][row["name"]]["saved"].values())
        assert sum(row["memory_parts_bytes"].values()) == row["peak_memory_bytes"]
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in before.items())
    assert not any(n for n, _ in pipe.unet.named_modules() if "lora" in n or "scetuner" in n)
    assert "| SC-Tuner (decoder skips) |" in memory_report(result)
    fig = memory_figure({"unet-tiny": result})
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 3 * 5
