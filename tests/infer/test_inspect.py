"""The structure graph shows the weights the losses apply: each loss value is rebuilt from its
terms and the graph's weights."""
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae import HFVAELoss, HITLoss, group
from pyro_hfvae.infer.inspect import structure_graph

N = 100


def _model(x, nested=None):
    with pyro.plate("data", size=N, subsample=torch.arange(len(x))):
        pyro.sample("c", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3)))
        # Named on the model side only: the loss and the graph must both see it.
        pyro.sample("a", dist.Normal(0.0, 1.0).expand([2]).to_event(1), infer={"group": "style/pose"})
        pyro.sample("b", dist.Normal(0.0, 2.0).expand([3]).to_event(1))
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1), obs=x)


def _guide(x, nested):
    with pyro.plate("data", size=N, subsample=torch.arange(len(x))):
        pyro.sample("c", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=x[:, :3]), infer={"group": "class"})
        pyro.sample("a", dist.Normal(x[:, :2], 1.0).to_event(1))
        if nested:
            with group("style"):
                pyro.sample("b", dist.Normal(x[:, 1:], 1.0).to_event(1), infer={"group": "size"})
        else:
            pyro.sample("b", dist.Normal(x[:, 1:], 1.0).to_event(1))


def _pair():
    # Not replayed: a replayed model would lose its own group annotations (replay overwrites infer).
    return _model, _guide, torch.randn(6, 4)


@pytest.mark.parametrize("nested", [False, True])
def test_graph_shows_the_hfvae_weights(nested):
    model, guide, x = _pair()
    loss_fn = HFVAELoss(alpha=0.5, beta=4.0, gamma=3.0, level_weights=[2.0])
    loss = loss_fn.loss(model, guide, x, nested)
    graph = structure_graph(model, guide, x, nested, loss=loss_fn)
    terms = loss_fn.terms
    weighted_tc = 0.0
    for key, data in graph.nodes(data=True):
        if data["kind"] in ("root", "group") and data["tc_weight"] is not None:
            tc = terms["tc_between"] if key == "root" else terms[f"tc_within/{data['path']}"]
            weighted_tc += data["tc_weight"] * tc
    mi_weight = graph.nodes["root"]["mi_weight"]
    objective = terms["log_likelihood"] - mi_weight * terms["mutual_info"] - weighted_tc - terms["dimwise_kl"]
    assert loss == pytest.approx(-N * objective, rel=1e-5)
    expected_groups = ["group:class", "group:style"] if nested else ["group:class", "group:style", "group:b"]
    assert list(graph.successors("root")) == expected_groups
    assert graph.nodes["group:style/pose"]["tc_weight"] == 2.0  # two variables at depth 2


def test_graph_shows_the_hit_weights():
    model, guide, x = _pair()
    loss_fn = HITLoss({"class": 0.5, "style/pose": 2.0, "style": 3.0}, default_beta=7.0, analytic_kl=False)
    loss = loss_fn.loss(model, guide, x, True)
    graph = structure_graph(model, guide, x, True, loss=loss_fn)
    weights = {s: graph.nodes[f"site:{s}"]["rate_weight"] for s in "cab"}
    assert weights == {"c": 0.5, "a": 2.0, "b": 3.0}
    rate = sum(weights[s] * loss_fn.terms[f"rate/{s}"] for s in "cab")
    assert loss == pytest.approx(N * (loss_fn.terms["distortion"] + rate), rel=1e-5)
