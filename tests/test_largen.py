"""LAR-Gen (swiftlite.diffusion.largen) on sd-tiny's quick build: each stage's processor against the computation
it extends, the 9-channel input at init, clean removal, save/load, the loss and the data engine."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from swiftlite import zoo
from swiftlite.data.inpaint import TASKS, grid_mask, inpaint_dataset
from swiftlite.diffusion.largen import (AssignProcessor, LarGen, LargenLoss, RefineProcessor, cross_attention_names,
                                        decoder_self_attention_names, decoupled_attention, encode_quadruplets,
                                        inpaint, largen_scores, subject_condition, align_subject_encoder,
                                        train_largen)
from swiftlite.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pipe():
    mp = pytest.MonkeyPatch()
    mp.setenv("SWIFTLITE_QUICK", "1")
    mp.setenv("HF_HUB_OFFLINE", "1")
    from swiftlite.zoo import sd

    yield sd.load(zoo.path("sd-tiny", progress=False))
    mp.undo()


@pytest.fixture(scope="module")
def quads(pipe):
    return encode_quadruplets(pipe, inpaint_dataset(6, seed=3))


def _inputs(pipe, b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    size, dim = pipe.unet.config.sample_size, pipe.unet.config.cross_attention_dim
    z_t = torch.randn(b, 4, size, size, generator=g)
    extra = torch.cat([(torch.rand(b, 1, size, size, generator=g) > 0.5).float(),
                       torch.randn(b, 4, size, size, generator=g)], dim=1)  # [m↓ ; E(x ⊙ (1 − m))]
    c = torch.randn(b, 8, dim, generator=g)
    return z_t, extra, c, torch.full((b,), 400)


def _perturb(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _condition(quads, pipe, has=None):
    from swiftlite.diffusion.sampling import prompt_embeddings

    rows = quads[:]
    batch = {"subject": rows["subject"], "subject_latents": rows["subject_latents"],
             "has_subject": torch.ones(len(rows["caption"])) if has is None else has}
    return subject_condition(batch, prompt_embeddings(pipe, [""]))


def test_decoupled_attention_is_text_attention_plus_lambda_image_attention():
    g = torch.Generator().manual_seed(0)
    q, kt, vt, ki, vi = (torch.randn(2, 3, n, 4, generator=g) for n in (5, 7, 7, 2, 2))
    dense = lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v  # noqa: E731 (d = 4, √d = 2)
    torch.testing.assert_close(decoupled_attention(q, kt, vt, ki, vi, 0.7), dense(q, kt, vt) + 0.7 * dense(q, ki, vi))


def test_lambda_zero_is_exactly_text_only_cross_attention(pipe, quads):
    z_t, extra, c, t = _inputs(pipe)
    locate = LarGen(pipe.unet, ("locate",))
    assign = LarGen(pipe.unet, ("locate", "assign"), image_scale=0.0)
    _perturb(assign.subject_encoder)
    for name in cross_attention_names(assign.unet):  # image keys/values that differ from the text ones
        _perturb(assign.unet.get_submodule(name.removesuffix(".processor")).processor)
    assert all(isinstance(p, AttnProcessor2_0) for p in locate.unet.attn_processors.values())
    u = torch.cat([z_t, extra], 1)
    with torch.no_grad():
        text_only = locate(u, t, encoder_hidden_states=c).sample
        with assign.condition(_condition(quads, pipe)):
            lam0 = assign(u, t, encoder_hidden_states=c).sample
            assign.image_scale = 1.0
            lam1 = assign(u, t, encoder_hidden_states=c).sample
    assert torch.equal(lam0, text_only)  # λ = 0: Z = Attn(Q, K_txt, V_txt), bit for bit
    assert (lam1 - text_only).abs().max() > 1e-3  # λ = 1: the subject changes the prediction


def test_no_subject_rows_get_exactly_zero_from_the_image_branch(pipe, quads):
    z_t, extra, c, t = _inputs(pipe)
    assign = LarGen(pipe.unet, ("locate", "assign"))
    u = torch.cat([z_t, extra], 1)
    has = torch.tensor([1, 0, 1, 0, 0, 1])
    with torch.no_grad():
        plain = assign(u, t, encoder_hidden_states=c).sample  # no condition: text-only
        with assign.condition(_condition(quads, pipe, has)):
            mixed = assign(u, t, encoder_hidden_states=c).sample
    assert torch.equal(mixed[has == 0], plain[has == 0])
    assert (mixed[has == 1] - plain[has == 1]).abs().max() > 1e-3


def test_refine_without_reference_is_plain_self_attention(pipe, quads):
    z_t, extra, c, t = _inputs(pipe)
    base = LarGen(pipe.unet, ("locate",))
    full = LarGen(pipe.unet, ("locate", "assign", "refine"))
    names = decoder_self_attention_names(full.unet)
    assert names and all(isinstance(full.unet.attn_processors[n], RefineProcessor) for n in names)
    assert all(n.startswith("up_blocks.") for n in names)
    u = torch.cat([z_t, extra], 1)
    with torch.no_grad():
        plain = base(u, t, encoder_hidden_states=c).sample
        no_reference = full(u, t, encoder_hidden_states=c).sample  # no condition: no tokens, no reference
        cond = _condition(quads, pipe, has=torch.zeros(6))  # reference run, but every row masks it out
        with full.condition(cond):
            masked_out = full(u, t, encoder_hidden_states=c).sample
            assert set(full.state.reference) == set(names)
        with full.condition(_condition(quads, pipe)):
            with_reference = full(u, t, encoder_hidden_states=c).sample
    assert torch.equal(no_reference, plain)
    torch.testing.assert_close(masked_out, plain, atol=1e-5, rtol=1e-5)
    assert (with_reference - plain).abs().max() > 1e-3
    assert not any(p.requires_grad for p in full.reference_unet.parameters())  # the reference U-Net is frozen


def test_nine_channels_at_init_predict_what_the_base_predicts_whatever_the_mask(pipe):
    """At init conv_in' = [W | 0]: the 9-channel U-Net's prediction equals the 4-channel base's prediction on
    z_t at every latent position (so on the unmasked part too), whatever the mask and masked latent are."""
    z_t, extra, c, t = _inputs(pipe)
    model = LarGen(pipe.unet, ("locate",))
    with torch.no_grad():
        base = pipe.unet(z_t, t, encoder_hidden_states=c).sample
        nine = model(torch.cat([z_t, extra], 1), t, encoder_hidden_states=c).sample
        other = model(torch.cat([z_t, torch.randn_like(extra)], 1), t, encoder_hidden_states=c).sample
    unmasked = extra[:, :1].expand_as(base) == 0
    torch.testing.assert_close(nine[unmasked], base[unmasked], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nine, base, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(other, nine, atol=1e-5, rtol=1e-5)
    assert pipe.unet.config.in_channels == 4 and model.unet.config.in_channels == 9  # the base is untouched


def test_processors_are_removed_cleanly(pipe, quads):
    z_t, extra, c, t = _inputs(pipe)
    model = LarGen(pipe.unet, ("locate", "assign", "refine"))
    assert any(isinstance(p, AssignProcessor) for p in model.unet.attn_processors.values())
    u = torch.cat([z_t, extra], 1)
    fresh = LarGen(pipe.unet, ("locate",))
    unet = model.remove_processors()
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    assert not [k for k in unet.state_dict() if "_ip" in k] and model.stages == ("locate",)
    with torch.no_grad():
        torch.testing.assert_close(unet(u, t, encoder_hidden_states=c).sample,
                                   fresh(u, t, encoder_hidden_states=c).sample, atol=0, rtol=0)


def test_save_load_round_trip(pipe, quads, tmp_path):
    z_t, extra, c, t = _inputs(pipe)
    model = LarGen(pipe.unet, ("locate", "assign", "refine"), image_scale=0.6)
    _perturb(model)
    model.save_pretrained(tmp_path)
    loaded = LarGen.from_pretrained(tmp_path, pipe.unet)
    assert loaded.stages == model.stages and loaded.image_scale == 0.6
    u = torch.cat([z_t, extra], 1)
    with torch.no_grad():
        outs = []
        for m in (model.eval(), loaded):
            with m.condition(_condition(quads, pipe)):
                outs.append(m(u, t, encoder_hidden_states=c).sample)
    assert torch.equal(*outs)


def test_loss_trains_every_stage_and_inpainting_runs(pipe, quads):
    from swiftlite.zoo.sd import load_judge

    empty = pipe.tokenizer("", padding="max_length", max_length=pipe.tokenizer.model_max_length)["input_ids"]
    loss = LargenLoss.for_pipeline(pipe, p_uncond=0.1, empty_ids=empty)
    model = LarGen(pipe.unet, ("locate", "assign", "refine"))
    before = model.subject_encoder.queries.detach().clone()
    history = train(model, quads, loss, steps=2, batch_size=6, lr=1e-3, progress=False)
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()
    assert not torch.equal(before, model.subject_encoder.queries)  # the subject branch receives gradients
    images = inpaint(pipe, model, quads, with_subject=True, with_text=True, num_inference_steps=2)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    scores = largen_scores(images, quads, load_judge(zoo.path("sd-tiny", progress=False)))
    assert 0 <= scores["identity"] <= 1 and np.isfinite(scores["background_psnr"])
    perfect = largen_scores(np.asarray(quads[:]["image"]), quads, load_judge(zoo.path("sd-tiny", progress=False)))
    assert perfect["background_psnr"] == 100.0  # identical outside the mask: PSNR_CAP


def test_data_engine_quadruplets():
    data = inpaint_dataset(12, seed=1, p_second=1.0).with_format("numpy")
    assert list(data["task"][:3]) == list(TASKS)
    for row in data:
        m = row["mask"].astype(bool)
        assert m.any() and (row["masked_image"][m] == 128).all()
        assert (row["masked_image"][~m] == row["image"][~m]).all()  # outside the box the scene is kept
        assert row["prompt"] == ("" if row["task"] == "subject" else row["caption"])
        assert row["has_subject"] == (row["task"] != "text") and row["shape"] in row["caption"]
    ys, xs = np.nonzero(grid_mask("top left", "large"))
    assert ys.min() == 0 and xs.min() == 0 and (ys.max() + 1) % 4 == 0  # snapped to the 4-px latent grid


def test_bad_inputs_name_the_field(pipe):
    with pytest.raises(ValueError, match="stages"):
        LarGen(pipe.unet, ("assign",))
    with pytest.raises(ValueError, match="'refine' needs 'assign'"):
        LarGen(pipe.unet, ("locate", "refine"))
    with pytest.raises(ValueError, match="in_channels"):
        LarGen(LarGen(pipe.unet).unet)
    with pytest.raises(ValueError, match="tasks"):
        inpaint_dataset(2, tasks=("painting",))


def test_align_subject_encoder_moves_subject_tokens_onto_the_caption_context(pipe):
    """After alignment the subject tokens are near the first N context rows of the subject's own caption,
    nearer than to another subject's caption; the U-Net is untouched; no Assign, no alignment."""
    quads = encode_quadruplets(pipe, inpaint_dataset(48, seed=5))
    model = LarGen(pipe.unet, ("locate", "assign"))
    unet_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    rows = quads.with_format("numpy")[:]
    ids = pipe.tokenizer(list(rows["caption"]), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt")["input_ids"]
    with torch.no_grad():
        target = pipe.text_encoder(input_ids=ids).last_hidden_state[:, :model.n_tokens]  # (B, N, D)

    def errors():
        with torch.no_grad():
            e = model.subject_encoder(subject_condition(quads[:], None)["subject"])
        own = ((e - target) ** 2).mean((1, 2))
        other = ((e - target.roll(1, 0)) ** 2).mean((1, 2))  # another row's caption
        differs = np.array(rows["caption"]) != np.roll(np.array(rows["caption"]), 1)
        return float(own.mean()), float(other[torch.as_tensor(differs)].mean())

    own_before, _ = errors()
    losses = align_subject_encoder(model, pipe, quads, steps=150, seed=0)
    own_after, other_after = errors()
    assert losses[-1] < 0.5 * losses[0] and own_after < 0.5 * own_before, (own_before, own_after)
    assert own_after < other_after  # the tokens say which subject, not only "a caption"
    assert all(torch.equal(v, unet_before[k]) for k, v in model.unet.state_dict().items() if k in unet_before)
    with pytest.raises(ValueError, match="no subject encoder"):
        align_subject_encoder(LarGen(pipe.unet, ("locate",)), pipe, quads, steps=1)
    # one aligned encoder shared by an arm: it starts from those weights (lr 0 keeps them)
    arm = train_largen(pipe, quads, ("locate", "assign"), steps=1, lr=0.0, encoder_from=model, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(arm.subject_encoder.state_dict().values(),
                                                 model.subject_encoder.state_dict().values()))
    with pytest.raises(ValueError, match="both models need Assign"):
        train_largen(pipe, quads, ("locate",), steps=1, encoder_from=model, progress=False)
