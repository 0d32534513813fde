import pytest
import torch
from pyro import poutine

from pyro_hfvae.models import VLAE, ConvHFVAE, HierarchicalVAE
from pyro_hfvae.models.layers import data_plate

SHAPE = (1, 32, 32)
MODELS = {
    "conv_hfvae": lambda: ConvHFVAE(SHAPE, num_classes=3, style_dim=2, hidden_dim=16),
    "hierarchical_vae": lambda: HierarchicalVAE(SHAPE, (3, 2), channels=(4,), hidden_dim=8),
    "vlae": lambda: VLAE(levels=2, latent_dim=2, image_shape=SHAPE, channels=4, hidden_dim=8),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(
    "idx, dataset_size, scale",
    [(torch.tensor([3, 7, 50, 99]), 100, 25.0), (None, 100, 25.0), (None, None, 1.0), (torch.arange(4), 4, 1.0)],
)
def test_every_model_scales_its_sites_by_the_data_plate(name, idx, dataset_size, scale):
    vae = MODELS[name]()
    x = (torch.rand((4,) + SHAPE) < 0.3).float()
    guide_trace = poutine.trace(vae.guide).get_trace(x, idx, dataset_size)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, idx, dataset_size)
    for trace in (guide_trace, model_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and type(site["fn"]).__name__ != "_Subsample":
                assert site["scale"] == pytest.approx(scale)
    if idx is not None:
        assert torch.equal(guide_trace.nodes["data"]["value"], idx)


def test_data_plate_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="expected dataset_size=N together with idx"):
        data_plate(x, torch.arange(4))
    with pytest.raises(ValueError, match=r"expected idx of shape \(4,\)"):
        data_plate(x, torch.arange(3), dataset_size=10)
