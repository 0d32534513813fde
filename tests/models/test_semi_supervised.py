import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from pyro_hfvae.models import SemiSupervisedHFVAE

SHAPE = (1, 8, 8)


def _vae():
    return SemiSupervisedHFVAE(SHAPE, num_classes=4, style_dim=3, hidden_dim=8, style_hidden_dim=5)


def test_labelled_sites_and_the_style_given_the_label():
    vae = _vae()
    x = torch.rand((5,) + SHAPE).round()
    labels, mask = torch.tensor([0, 3, 2, 1, 1]), torch.tensor([True, False, True, False, False])
    guide = poutine.trace(vae.guide).get_trace(x, torch.arange(5), 50, labels, mask)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x, torch.arange(5), 50, labels, mask)
    sample_sites = [n for n, s in model.nodes.items() if s["type"] == "sample" and n != "data"]
    assert sample_sites == ["y_observed", "y_unobserved", "y", "z", "x"]
    assert torch.equal(guide.nodes["y_unobserved"]["mask"], ~mask)
    assert torch.equal(model.nodes["y_observed"]["value"], F.one_hot(labels, 4).float())
    # The guide's style posterior reads the label where it is known, the sampled class elsewhere.
    y = torch.where(mask[:, None], F.one_hot(labels, 4).float(), guide.nodes["y_unobserved"]["value"])
    with torch.no_grad():
        expected_loc = vae._style(vae.encoder(x), y)[0]
    assert torch.allclose(guide.nodes["z"]["fn"].base_dist.loc, expected_loc)
    assert torch.equal(model.nodes["y"]["value"], y)


def test_label_errors():
    vae = _vae()
    x = torch.rand((3,) + SHAPE)
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(3,\)"):
        vae.guide(x, labels=torch.zeros(3))
    with pytest.raises(ValueError, match="expected a bool label_mask"):
        vae.guide(x, labels=torch.zeros(3, dtype=torch.long), label_mask=torch.ones(3))
    with pytest.raises(ValueError, match="expected labels with label_mask"):
        vae.model(x, label_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected label_fraction in \[0, 1\]"):
        SemiSupervisedHFVAE(SHAPE, label_fraction=1.5)


@pytest.mark.parametrize("fraction,num_items,expected", [(0.1, 1000, 100), (0.25, 10, 2), (0.0, 7, 0), (1.0, 7, 7)])
def test_labelled_items_count_and_determinism(fraction, num_items, expected):
    vae = SemiSupervisedHFVAE(image_shape=(1, 8, 8), label_fraction=fraction, label_unit="item")
    known = vae.labelled_items(num_items, seed=5)
    assert known.dtype == torch.bool and known.shape == (num_items,) and int(known.sum()) == expected
    assert torch.equal(known, vae.labelled_items(num_items, seed=5))
    if 0 < expected < num_items:
        assert not torch.equal(known, vae.labelled_items(num_items, seed=6))


def test_label_unit_error():
    with pytest.raises(ValueError, match="expected label_unit 'batch' or 'item' but got 'items'"):
        SemiSupervisedHFVAE(label_unit="items")


def test_posterior_is_the_guide_at_the_class_probabilities():
    vae = _vae()
    x = torch.rand((6,) + SHAPE).round()
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).expand(6, 4)
    with torch.no_grad():
        vae.class_head.weight.zero_()
        vae.class_head.bias.copy_(probs[0].log())
    posterior = vae.posterior(x)
    assert torch.allclose(posterior["y"].probs, probs)
    # The guide's style at y = the class probabilities, computed by hand from the layers.
    with torch.no_grad():
        h = torch.relu(vae.encoder[1](x.flatten(1)))
        loc, log_scale = vae.style_head(torch.cat([h, probs], -1)).split(3, -1)
    assert torch.allclose(posterior["z"].mean, loc)
    assert torch.allclose(posterior["z"].stddev, log_scale.exp())
    codes = vae.encode(x)
    assert torch.equal(codes["y"], posterior["y"].probs) and torch.equal(codes["z"], posterior["z"].mean)
