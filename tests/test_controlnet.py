"""ControlNet baseline: diffusers' ControlNetModel.from_unet beside a frozen U-Net; zero init, the condition
reaches the output, only the ControlNet trains, and its size against the CSC-Tuner on the same U-Net."""
import pytest
import torch

from swiftlite.diffusion.controlnet import ControlNetUNet, trainable_parameter_count
from swiftlite.testing import models
from swiftlite import SCETuningConfig, Swift


def cond(seed, batch=2):
    return (torch.rand(batch, 8, 8, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def run(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(**inputs).sample


def test_zero_init_condition_effect_and_training_reach_only_the_controlnet():
    base, inputs = models.unet()
    y_base = run(base, inputs)
    model = ControlNetUNet(models.unet()[0])
    assert torch.equal(run(model, inputs), y_base)  # no condition: the U-Net itself
    with model.conditioned(cond(0)):
        assert torch.equal(run(model, inputs), y_base)  # zero convs: no effect at init
    assert all(not p.requires_grad for p in model.unet.parameters())
    assert trainable_parameter_count(model) == sum(p.numel() for p in model.controlnet.parameters())
    # the encoder copy starts as the U-Net's own weights
    assert torch.equal(model.controlnet.conv_in.weight, model.unet.conv_in.weight)

    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    for step in range(3):
        with model.conditioned(cond(step)):
            loss = model(**inputs).sample.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in before.items())  # the U-Net is frozen
    assert model.controlnet.controlnet_mid_block.weight.abs().sum() > 0  # a zero conv has learnt
    with torch.no_grad():  # as if trained longer: the condition embedding's zero conv moves too
        model.controlnet.controlnet_cond_embedding.conv_out.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    with model.conditioned(cond(0)):
        y0 = run(model, inputs)
    with model.conditioned(cond(1)):
        y1 = run(model, inputs)
    assert (y0 - y1).abs().max() > 1e-4  # after training the condition matters
    assert model.condition is None  # restored by the context manager


def test_condition_batch_is_tiled_and_bad_shapes_are_refused():
    model = ControlNetUNet(models.unet()[0])
    _, inputs = models.unet()
    with pytest.raises(ValueError, match=r"expected a \(B, 1, H, W\) map"):
        model.set_condition(torch.zeros(2, 3, 8, 8))
    with model.conditioned(cond(0, batch=3)), pytest.raises(ValueError, match="batch of 3 does not divide"):
        run(model, inputs)


def test_csc_has_far_fewer_trainable_parameters_than_controlnet():
    """The comparison the tutorial makes on unet-tiny, here on the test U-Net: CSC (SC tuners + a small
    condition encoder) is a fraction of the ControlNet copy of the encoder."""
    controlnet = trainable_parameter_count(ControlNetUNet(models.unet()[0]))
    csc = Swift.prepare_model(models.unet()[0], SCETuningConfig(
        dims=[32, 16, 16, 16], target_modules=r"up_blocks\.\d+\.resnets\.\d+", condition_channels=1,
        condition_dims=[8, 16]))
    csc_params = sum(p.numel() for p in csc.adapter_parameters("default").values())
    assert csc_params < 0.5 * controlnet, (csc_params, controlnet)
