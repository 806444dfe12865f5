"""StyleBooth (swiftlite.diffusion.stylebooth, stylebooth_data) on sd-tiny's quick build: the 8-channel editor
starts as the text-to-image model, the dual guidance telescopes, condition dropout gives the three dropped
cases, the sampler is diffusers' InstructPix2Pix pipeline when guide rescale is off, the exemplar token
composes linearly, the usability filter keeps and drops hand-made pairs, and the editor round-trips."""

import numpy as np
import pytest
import torch

from swiftlite import zoo
from swiftlite.data.scenes import render_scene
from swiftlite.data.shapes import sample_content
from swiftlite.diffusion.stylebooth import (IMAGE_TOKEN, STYLEBOOTH_STYLES, StyleBooth, StyleBoothConfig,
                                            StyleBoothLoss, condition_dropout, dual_guidance, instruction,
                                            stylebooth_edit)
from swiftlite.diffusion.stylebooth_data import (SD_TINY_WORLD, edit_scores, mask_box_iou, render_pairs,
                                                 usability_filter)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pipe():
    from swiftlite.zoo import sd

    mp = pytest.MonkeyPatch()
    mp.setenv("SWIFTLITE_QUICK", "1")
    yield sd.load(zoo.path("sd-tiny", progress=False))
    mp.undo()


@pytest.fixture(scope="module")
def judge():
    """The shipped (full) sd-tiny judge: trained on real renders, style accuracy ≈ 1 on them."""
    from swiftlite.zoo.sd import load_judge

    return load_judge(zoo.path("sd-tiny", quick=False, build_if_missing=False))


@pytest.fixture(scope="module")
def editor(pipe):
    return StyleBooth.from_text_to_image(pipe, seed=0)


def test_zero_initialised_channels_and_new_tokens_leave_the_text_to_image_model_unchanged(pipe, editor):
    z, src = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    caption = ["a large red striped circle at the top left", "a medium blue square in the center"]
    ids = pipe.tokenizer(caption, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt")["input_ids"]
    assert torch.equal(editor.token_ids(caption), ids)  # the added words do not change how captions tokenize
    with torch.no_grad():
        ctx = pipe.text_encoder(ids).last_hidden_state
        assert torch.allclose(editor.encode(ids), ctx, atol=1e-6)
        t = torch.tensor([10, 700])
        base = pipe.unet(z, t, encoder_hidden_states=ctx).sample
        widened = editor.unet(torch.cat([z, src], 1), t, encoder_hidden_states=ctx).sample
    assert torch.allclose(widened, base, atol=1e-5)
    assert editor.unet.conv_in.weight[:, 4:].abs().max() == 0
    # every template word is one token; <image> is one token
    for k in range(16):
        text = instruction(None, k)
        tokens = editor.tokenizer.tokenize(text)
        assert tokens.count(IMAGE_TOKEN) == 1 and len(tokens) == len(text.split())


def test_dual_guidance_reduces_to_the_conditional_prediction_when_both_scales_are_one():
    g = torch.Generator().manual_seed(0)
    u, i, f = (torch.randn(3, 4, 8, 8, generator=g) for _ in range(3))
    for rescale in (0.0, 0.5, 1.0):
        torch.testing.assert_close(dual_guidance(u, i, f, 1.0, 1.0, rescale), f)
    torch.testing.assert_close(dual_guidance(u, i, f, 0.0, 0.0), u)  # both scales 0: unconditional
    torch.testing.assert_close(dual_guidance(u, i, f, 1.0, 0.0), i)  # text scale 0: image-only prediction
    rescaled = dual_guidance(u, i, f, 1.5, 7.5, 1.0)  # φ = 1: the guided prediction takes ε_full's std
    assert torch.allclose(rescaled.std(dim=(1, 2, 3)), f.std(dim=(1, 2, 3)), rtol=1e-4)


def test_condition_dropout_produces_the_three_dropped_cases():
    n, p_zero, i_zero = 20_000, 0.3, 0.2
    ids = torch.arange(1, 9).repeat(n, 1)  # (n, 8)
    empty = torch.zeros(8, dtype=torch.long)
    source = torch.ones(n, 4, 2, 2)
    new_ids, new_src, text, image = condition_dropout(ids, source, empty, p_zero, i_zero,
                                                      torch.Generator().manual_seed(0))
    assert torch.equal(new_ids[text], empty.expand(int(text.sum()), 8)) and torch.equal(new_ids[~text], ids[~text])
    assert new_src[image].abs().sum() == 0 and torch.equal(new_src[~image], source[~image])
    shares = {"text only": (text & ~image), "image only": (~text & image), "both": (text & image),
              "neither": (~text & ~image)}
    expected = {"text only": p_zero * (1 - i_zero), "image only": (1 - p_zero) * i_zero, "both": p_zero * i_zero,
                "neither": (1 - p_zero) * (1 - i_zero)}
    for case, rows in shares.items():
        assert abs(rows.float().mean().item() - expected[case]) < 0.015, case
    with pytest.raises(ValueError, match="p_zero"):
        StyleBoothConfig(p_zero=1.5)


def test_sampler_is_diffusers_instruct_pix2pix_when_guide_rescale_is_off(pipe, editor):
    images = render_pairs(2, seed=3)["plain"]
    ours = stylebooth_edit(editor, images, ["stripes", "dots"], s_img=1.5, s_txt=3.0, guide_rescale=0.0, steps=3,
                           seed=5, return_latents=True)
    ids = editor.token_ids([instruction("stripes"), instruction("dots")])
    pixels = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    theirs = editor.pipeline()(prompt_embeds=editor.encode(ids).detach(), image=pixels, num_inference_steps=3,
                               guidance_scale=3.0, image_guidance_scale=1.5, output_type="latent",
                               generator=torch.Generator().manual_seed(5)).images
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    rescaled = stylebooth_edit(editor, images, "stripes", s_txt=3.0, guide_rescale=0.7, steps=3, seed=5,
                               return_latents=True)
    assert not torch.allclose(rescaled, ours)  # φ does act
    with pytest.raises(ValueError, match="styles= .* or exemplars="):
        stylebooth_edit(editor, images, "stripes", exemplars=images)


def test_exemplar_token_replaces_the_placeholder_and_composes_linearly(editor):
    ids = editor.token_ids([instruction(None, 0)] * 2)
    pos = (ids[0] == editor.image_token_id).nonzero()[0, 0]
    phi = torch.randn(2, 2, editor.projection.in_features)  # two exemplars per row
    with torch.no_grad():
        plain = editor.encode(ids)
        a = editor.encode(ids, phi[:, 0])
        b = editor.encode(ids, phi[:, 1])
        mix = editor.encode(ids, phi, weights=[0.25, 0.75])
    others = torch.arange(ids.shape[1]) != pos
    assert torch.equal(a[:, others], plain[:, others])  # only the <image> row changes
    torch.testing.assert_close(a[:, pos], editor.projection(phi[:, 0]).detach())
    torch.testing.assert_close(mix[:, pos], 0.25 * a[:, pos] + 0.75 * b[:, pos])  # Σ_k w_k · W φ_k
    with torch.no_grad():
        torch.testing.assert_close(editor.encode(ids, phi, weights=[1.0, 0.0]), a)


def test_usability_filter_keeps_and_drops_hand_made_pairs(judge):
    rng = np.random.default_rng(0)
    content = sample_content(rng, 32, positions=("top left",), sizes=("large",), backgrounds=("black",),
                             shapes=("square",), colours=("red",))
    moved = sample_content(rng, 32, positions=("bottom right",), sizes=("large",), backgrounds=("black",),
                           shapes=("square",), colours=("red",))
    recoloured = sample_content(rng, 32, positions=("top left",), sizes=("large",), backgrounds=("black",),
                                shapes=("square",), colours=("blue",))
    draw = lambda c, s: render_scene([(c, s)], 32, np.random.default_rng(1))["image"]
    source = draw(content, "plain")
    targets = np.stack([draw(content, "stripes"), draw(content, "outline"), draw(moved, "stripes"),
                        draw(recoloured, "stripes"), draw(content, "plain")])
    styles = ["stripes", "outline", "stripes", "stripes", "stripes"]
    verdict = usability_filter(np.stack([source] * 5), targets, styles, judge)
    assert verdict["keep"].tolist() == [True, True, False, False, False]
    assert verdict["content_kept"].tolist() == [True, True, False, False, True]  # moved, recoloured fail content
    assert verdict["style_reached"].tolist() == [True, True, True, True, False]  # still plain fails style
    assert mask_box_iou(source[None], targets[1:2])[0] > 0.8  # the outline's box is the filled square's
    scores = edit_scores(np.stack([source] * 5), targets, styles, judge, truth=np.stack([targets[0]] * 5))
    assert scores["success"] == pytest.approx(0.4) and scores["pixel_error"] > 0
    with pytest.raises(ValueError, match="one target and one style"):
        usability_filter(np.stack([source] * 2), targets, styles, judge)


def test_render_pairs_share_content_and_differ_in_style(judge):
    pairs = render_pairs(24, seed=0)
    got_plain, got_styled = judge.predict(pairs["plain"]), judge.predict(pairs["styled"])
    assert np.mean(np.array(got_plain["style"]) == "plain") > 0.9
    assert np.mean(np.array(got_styled["style"]) == pairs["style"]) > 0.9
    assert np.mean(np.array(got_plain["colour"]) == np.array(got_styled["colour"])) > 0.9
    assert set(pairs["style"]) <= set(STYLEBOOTH_STYLES) and "striped" not in pairs["caption_plain"][0]
    assert set(SD_TINY_WORLD["colours"]) >= {got_plain["colour"][0]}


def test_training_step_and_save_load_round_trip(pipe, tmp_path):
    from swiftlite.train import train
    import datasets

    model = StyleBooth.from_text_to_image(pipe, StyleBoothConfig(p_exemplar=0.5), seed=1)
    pairs = render_pairs(8, seed=1)
    bank = {s: model.exemplar_features(render_pairs(4, seed=10 + k, styles=(s,))["styled"])
            for k, s in enumerate(STYLEBOOTH_STYLES)}
    data = datasets.Dataset.from_dict({"source_latents": model.source_latents(pairs["plain"]).numpy(),
                                       "target_latents": model.target_latents(pairs["styled"]).numpy(),
                                       "style": [STYLEBOOTH_STYLES.index(s) for s in pairs["style"]]}).with_format("torch")
    model.align_exemplars(bank)  # μ, σ become real statistics: the round trip must carry them
    before = model.unet.conv_in.weight[:, 4:].detach().clone()
    w_before = model.projection.weight.detach().clone()
    train(model, data, StyleBoothLoss(model, bank), steps=3, batch_size=8, lr=1e-3, progress=False)
    assert not torch.equal(model.unet.conv_in.weight[:, 4:], before)  # the source channels learn
    assert not torch.equal(model.projection.weight, w_before)  # W learns through the <image> rows
    assert all(not p.requires_grad for p in model.vae.parameters())
    model.eval().save_pretrained(tmp_path / "editor")
    loaded = StyleBooth.from_pretrained(tmp_path / "editor")
    assert loaded.config == model.config
    assert torch.equal(loaded.exemplar_mean, model.exemplar_mean) and torch.equal(loaded.exemplar_scale, model.exemplar_scale)
    assert model.exemplar_scale.ne(1).any()
    kwargs = dict(steps=2, seed=0, return_latents=True)
    torch.testing.assert_close(stylebooth_edit(loaded, pairs["plain"][:2], exemplars=pairs["styled"][:2], **kwargs),
                               stylebooth_edit(model, pairs["plain"][:2], exemplars=pairs["styled"][:2], **kwargs))
    torch.testing.assert_close(stylebooth_edit(loaded, pairs["plain"][:2], "dots", **kwargs),
                               stylebooth_edit(model, pairs["plain"][:2], "dots", **kwargs))
    with pytest.raises(ValueError, match="8 channels"):
        StyleBooth(pipe.unet, model.text_encoder, model.tokenizer, model.vae, model.scheduler, model.projection)
    with pytest.raises(FileNotFoundError, match="stylebooth/config.json"):
        StyleBooth.from_pretrained(tmp_path)


def test_align_exemplars_sends_each_style_to_its_words_row(pipe):
    """After alignment an exemplar's token is nearer the context row of its own style word than of any
    other style's (held-out exemplars, not the bank); before it, a random W has no reason to be."""
    model = StyleBooth.from_text_to_image(pipe, seed=2)
    bank = {s: model.exemplar_features(render_pairs(64, seed=20 + k, styles=(s,))["styled"])
            for k, s in enumerate(STYLEBOOTH_STYLES)}
    words = {s: r.mean(0) for s, r in model.word_rows().items()}
    target = torch.stack([words[s] for s in STYLEBOOTH_STYLES])  # (3, D)

    def nearest_word_accuracy() -> float:
        hits = []
        for k, s in enumerate(STYLEBOOTH_STYLES):
            held_out = model.exemplar_features(render_pairs(40, seed=90 + k, styles=(s,))["styled"])
            with torch.no_grad():
                token = model.projection(model.standardise(held_out))  # (40, D)
            hits.append((torch.cdist(token, target).argmin(1) == k).float())
        return float(torch.cat(hits).mean())

    before = nearest_word_accuracy()
    cosine = model.align_exemplars(bank)
    after = nearest_word_accuracy()
    assert cosine > 0.9, cosine
    assert after >= 0.8 and after > before + 0.3, (before, after)  # quick VAE: about 0.92 (full build: 0.98)
    assert torch.allclose(model.standardise(torch.cat(list(bank.values()))).mean(0), torch.zeros(1), atol=1e-4)
    with pytest.raises(ValueError, match="bank has no exemplars of"):
        model.align_exemplars({"dots": bank["dots"]})
