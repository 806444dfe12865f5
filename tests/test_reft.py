"""ReFT: the interventions against their dense equations, R orthonormal through training, what holds at
init, layer selection and errors. On transformers' real LlamaForCausalLM (tiny)."""
import pytest
import torch

from swiftlite import Swift
from swiftlite.testing import models
from swiftlite.tuners.reft import ReftConfig, ReftIntervention

D, R_RANK = 32, 4


def hidden(seed=0):
    return torch.randn(2, 5, D, generator=torch.Generator().manual_seed(seed))


def parts(module):
    """R (r, d), W (r, d), b (r,) as plain tensors."""
    return module.R.detach(), module.learned_source.weight.detach(), module.learned_source.bias.detach()


@pytest.mark.parametrize("kind", ["LoreftIntervention", "NoreftIntervention", "DireftIntervention"])
def test_intervention_matches_its_equation(kind):
    torch.manual_seed(0)
    phi = ReftIntervention(D, R_RANK, kind)
    h = hidden()
    R, W, b = parts(phi)
    if kind == "DireftIntervention":
        expected = h + (h @ W.T + b) @ R  # h + Rᵀ(W h + b)
    else:
        expected = h + (h @ W.T + b - h @ R.T) @ R  # h + Rᵀ(W h + b − R h)
    torch.testing.assert_close(phi(h), expected)


def test_loreft_rows_are_orthonormal_and_stay_so_through_training():
    torch.manual_seed(0)
    phi = ReftIntervention(D, R_RANK, "LoreftIntervention")
    noreft = ReftIntervention(D, R_RANK, "NoreftIntervention")
    assert not torch.allclose(noreft.R @ noreft.R.T, torch.eye(R_RANK), atol=1e-3)  # NoReFT: a plain linear
    R0 = phi.R.detach().clone()
    optimizer = torch.optim.Adam(phi.parameters(), lr=0.1)
    target = hidden(1)
    for _ in range(5):
        loss = (phi(hidden()) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (phi.R - R0).abs().max() > 1e-2  # R moved ...
    torch.testing.assert_close(phi.R @ phi.R.T, torch.eye(R_RANK), atol=1e-5, rtol=0)  # ... and stayed orthonormal


def test_loreft_stays_orthonormal_under_weight_decay_and_perturbation():
    """Regression: with torch's orthogonal(use_trivialization=False), R's column signs come from the stored
    matrix's diagonal cast to int, so weight decay (or the kit's perturbation) shrinking it below 1 made R = 0."""
    torch.manual_seed(0)
    phi = ReftIntervention(D, R_RANK, "LoreftIntervention")
    stored = phi.rotate_layer.parametrizations.weight.original
    with torch.no_grad():
        stored.mul_(0.9)  # every entry shrinks, as weight decay does; the diagonal drops below 1
    torch.testing.assert_close(phi.R @ phi.R.T, torch.eye(R_RANK), atol=1e-5, rtol=0)
    optimizer = torch.optim.AdamW(phi.parameters(), lr=0.05, weight_decay=0.5)
    for _ in range(5):
        loss = (phi(hidden()) - hidden(1)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(phi.R @ phi.R.T, torch.eye(R_RANK), atol=1e-5, rtol=0)
    assert phi.rotate_layer.parametrizations.weight.original.grad.abs().sum() > 0  # R still receives gradients


def test_what_holds_at_init():
    torch.manual_seed(0)
    phi = ReftIntervention(D, R_RANK, "LoreftIntervention")
    h = hidden()
    R, W, b = parts(phi)
    out = phi(h).detach()
    assert (out - h).abs().max() > 1e-2  # not the identity at init (W, b are random, as in pyreft)
    # the edit lies in the row space of R: (I − RᵀR)(Φ(h) − h) = 0 ...
    torch.testing.assert_close((out - h) @ (torch.eye(D) - R.T @ R), torch.zeros_like(h), atol=1e-5, rtol=0)
    # ... where R h is replaced by W h + b
    torch.testing.assert_close(out @ R.T, h @ W.T + b, atol=1e-5, rtol=1e-5)
    # W = R, b = 0 makes it the identity
    with torch.no_grad():
        phi.learned_source.weight.copy_(R)
        phi.learned_source.bias.zero_()
    torch.testing.assert_close(phi(h), h, atol=1e-5, rtol=0)


def test_edits_the_output_of_the_chosen_llama_layers():
    base, inputs = models.llama()
    with torch.no_grad():
        y_base = base(**inputs).logits
    model = Swift.prepare_model(base, ReftConfig(layers=[0]))
    layers = model.base_model.model.layers
    phi = layers[0].reft_default
    assert not hasattr(layers[1], "reft_default")
    seen = {}
    hooks = [layers[0].base_layer.register_forward_hook(lambda m, a, out: seen.update(h=out)),  # layer 0's own output
             layers[1].register_forward_pre_hook(lambda m, args: seen.update(next_in=args[0]))]  # what layer 1 receives
    with torch.no_grad():
        model(**inputs)
    for hook in hooks:
        hook.remove()
    h = seen["h"][0] if isinstance(seen["h"], tuple) else seen["h"]
    torch.testing.assert_close(seen["next_in"], phi(h))  # Φ applied to layer 0's output, at every position
    with model.disable_adapter(), torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, y_base)
    keys = set(model.state_dict(adapter_name="default"))
    assert keys == {"model.layers.0.reft_default.rotate_layer.parametrizations.weight.original",
                    "model.layers.0.reft_default.learned_source.weight", "model.layers.0.reft_default.learned_source.bias"}


def test_layer_stack_and_layers():
    base, _ = models.llama()
    model = Swift.prepare_model(base, ReftConfig(layer_key="model.layers", layers=[-1], r=2))
    layers = model.base_model.model.layers
    assert [hasattr(layer, "reft_default") for layer in layers] == [False, True]
    assert layers[1].reft_default.R.shape == (2, 32)


@pytest.mark.parametrize("kwargs,match", [
    ({"layers": [5]}, r"ReftConfig.layers=\[5\]: 'model.layers' has 2 layers"),
    ({"layer_key": "model"}, r"ReftConfig.layer_key='model' is not an nn.ModuleList"),
    ({"r": 33}, r"ReftConfig.r=33: .* r <= 32"),
    ({"args": '{"act_fn": "relu"}'}, r"ReftConfig.args: only 'dropout'"),
    ({"args": '{"dropout": 1.5}'}, r"ReftConfig.args: 'dropout' must be"),
])
def test_errors_name_the_field(kwargs, match):
    base, _ = models.llama()
    with pytest.raises(ValueError, match=match):
        Swift.prepare_model(base, ReftConfig(**kwargs))


def test_config_follows_ms_swift():
    config = ReftConfig()
    assert (config.swift_type, config.r, config.intervention_type, config.layers) == ("reft", 4, "LoreftIntervention", None)
    # ms-swift passes args as a JSON string; a dict (what its saved config holds after parsing) works too
    assert ReftConfig(args='{"dropout": 0.1}').parsed_args() == ReftConfig(args={"dropout": 0.1}).parsed_args() == {"dropout": 0.1}
    base, _ = models.llama()
    model = Swift.prepare_model(base, ReftConfig(args='{"dropout": 0.1}'))
    assert model.base_model.model.layers[0].reft_default.dropout.p == 0.1


def test_dropout_follows_the_base_mode():
    base, inputs = models.llama()  # in eval mode
    model = Swift.prepare_model(base, ReftConfig(args={"dropout": 0.5}))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits)  # no dropout in eval mode
        model.train()
        assert (model(**inputs).logits - model(**inputs).logits).abs().max() > 0  # dropout in training
