import json

import matplotlib.image
import networkx as nx
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae import HFVAELoss, group
from pyro_hfvae.infer.hit import HITLoss
from pyro_hfvae.infer.inspect import describe_distribution, structure_graph
from pyro_hfvae.models.conv_hfvae import ConvHFVAE
from pyro_hfvae.plots import (
    plot_latent_traversals,
    plot_mig_scatter,
    plot_reconstructions,
    plot_structure_graph,
    plot_training_curves,
    plot_variable_information,
)
from pyro_hfvae.training.run_figures import plot_comparison, plot_run
from pyro_hfvae.training.trainer import Trainer


def _assert_png(path, min_width=100):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[1] >= min_width and image.std() > 0  # not a blank canvas


@pytest.fixture
def vae():
    return ConvHFVAE((1, 8, 8), num_classes=3, style_dim=2, hidden_dim=16)


def test_latent_traversals(vae, tmp_path):
    x = torch.rand(4, 1, 8, 8)
    figure = plot_latent_traversals(vae, x, num_steps=5, labels={("z", 1): "I=0.50"}, path=tmp_path / "t.png")
    _assert_png(tmp_path / "t.png")
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["y = 0", "y = 1", "y = 2", "z[0]", "z[1]  I=0.50"]  # one row per category of the Concrete
    # rows are the decoder's output with the traversed value set: compare one row with the model's own decoder
    means = vae.encode(x[:1])
    z = means["z"].expand(5, 2).clone()
    z[:, 0] = torch.linspace(-3, 3, 5)
    expected = vae.decode({"y": means["y"].expand(5, 3), "z": z})
    from pyro_hfvae.infer.inference_data import decode_latents

    row = decode_latents(vae.model, {"y": means["y"].expand(5, 3), "z": z}, x[:1].expand(5, 1, 8, 8))
    assert torch.allclose(row, expected, atol=1e-6)


def test_traversals_of_a_hierarchical_model_follow_the_prior_below(tmp_path):
    from pyro_hfvae.models import HierarchicalVAE

    vae = HierarchicalVAE((1, 8, 8), latent_dims=(3, 2), channels=(4,), hidden_dim=8)
    x = torch.rand(3, 1, 8, 8)
    plot_latent_traversals(vae, x, variables=[("z2", 0), ("z1", 2)], num_steps=3, path=tmp_path / "h.png")
    _assert_png(tmp_path / "h.png", min_width=50)
    from pyro_hfvae.plots.latent_traversals import _descendants

    assert _descendants(vae.model, x, ["z2", "z1"], {}) == {"z2": {"z1"}, "z1": set()}


def test_reconstructions(vae, tmp_path):
    plot_reconstructions(vae, torch.rand(6, 1, 8, 8), path=tmp_path / "r.png")
    _assert_png(tmp_path / "r.png")


def test_variable_information(tmp_path):
    figure = plot_variable_information({"y": [1.2], "z": [0.01, 2.5, 0.7]}, discrete_sites=["y"], num_data=100,
                                       path=tmp_path / "i.png")
    _assert_png(tmp_path / "i.png")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["z[1]", "y", "z[2]", "z[0]"]
    assert "1 of 4 below 0.05 nats" in figure.axes[0].get_title()


def test_training_curves(tmp_path):
    records = [{"step": s, "loss": 100.0 / s, "elbo": -10.0 / s, "rate/z": 1.0, "seconds": s} for s in range(1, 30)]
    records.append({"step": 29, "event": "interrupted", "message": "stopped"})
    figure = plot_training_curves(records, path=tmp_path / "c.png")
    _assert_png(tmp_path / "c.png")
    assert [ax.get_title() for ax in figure.axes] == ["elbo"]
    with pytest.raises(ValueError, match="expected at least one logged step"):
        plot_training_curves([])


def test_mig_scatter_and_comparison(tmp_path):
    for name, (mig, mig_sup) in {"a": (0.1, 0.3), "b": (0.4, 0.2)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"metrics": {"mig": mig, "mig_sup": mig_sup}}))
    plot_comparison([tmp_path / "a", tmp_path / "b"], tmp_path / "m.png")
    _assert_png(tmp_path / "m.png")
    with pytest.raises(ValueError, match="expected runs with the metrics mig and mig_sup"):
        plot_mig_scatter({"a": {"mig": 0.1}})
    with pytest.raises(FileNotFoundError, match="evaluate the run first"):
        plot_comparison([tmp_path], tmp_path / "n.png")


def _nested_model(x):
    with pyro.plate("data", size=100, subsample=torch.arange(len(x))):
        pyro.sample("c", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3)))
        pyro.sample("a", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("b", dist.Normal(0.0, 2.0).expand([3]).to_event(1))
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1), obs=x)


def _nested_guide(x):
    with pyro.plate("data", size=100, subsample=torch.arange(len(x))):
        pyro.sample("c", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=x[:, :3]), infer={"group": "class"})
        with group("style"):
            pyro.sample("a", dist.Normal(x[:, :2], 1.0).to_event(1), infer={"group": "pose"})
            pyro.sample("b", dist.Normal(x[:, 1:], 1.0).to_event(1), infer={"group": "size"})


def test_structure_graph_follows_the_group_tree_and_the_loss_weights(tmp_path):
    x = torch.randn(5, 4)
    loss = HFVAELoss(alpha=0.5, beta=4.0, gamma=3.0, level_weights=[2.0])
    graph = structure_graph(_nested_model, _nested_guide, x, loss=loss)
    assert nx.is_tree(graph)
    assert [graph.nodes[n]["label"] for n in graph.successors("root")] == ["class", "style"]
    assert list(graph.successors("group:style")) == ["group:style/pose", "group:style/size"]
    assert graph.nodes["root"]["tc_weight"] == 4.0 and graph.nodes["root"]["mi_weight"] == 0.5
    assert graph.nodes["group:style"]["tc_weight"] == 3.0  # between pose and size
    assert graph.nodes["group:style/pose"]["tc_weight"] == 2.0  # within pose: 2 variables
    assert graph.nodes["group:style/size"]["tc_weight"] == 2.0
    assert graph.nodes["group:class"]["tc_weight"] is None  # one variable: no total correlation
    assert graph.nodes["site:b"]["prior"] == "Normal(0, 2)"
    assert graph.nodes["site:c"]["prior"] == "Concrete(K=3, T=0.5)"
    assert graph.nodes["site:a"]["posterior"] == "Normal(conditional)"
    assert [graph.nodes["site:" + s]["num_variables"] for s in "cab"] == [1, 2, 3]
    assert sum(d["kind"] == "variable" for _, d in graph.nodes(data=True)) == 6
    plot_structure_graph(graph, path=tmp_path / "g.png")
    _assert_png(tmp_path / "g.png")
    # collapsed variables of big sites still draw
    plot_structure_graph(graph, max_variables=2, path=tmp_path / "g2.png")
    _assert_png(tmp_path / "g2.png")


def test_structure_graph_with_hit_rates():
    x = torch.randn(5, 4)
    graph = structure_graph(_nested_model, _nested_guide, x, loss=HITLoss({"a": 0.5, "style": 2.0}, default_beta=3.0))
    rates = {graph.nodes[f"site:{s}"]["label"]: graph.nodes[f"site:{s}"]["rate_weight"] for s in "abc"}
    assert rates == {"a": 0.5, "b": 2.0, "c": 3.0}  # own name, then group, then default
    assert graph.nodes["root"]["tc_weight"] is None


def test_describe_distribution():
    assert describe_distribution(dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1)) == "Normal(0, 1)"
    assert describe_distribution(dist.Normal(torch.tensor([0.0, 1.0]), 1.0)) == "Normal(conditional)"


def test_plot_run_writes_every_figure_of_a_progressive_run(tiny_progressive_config, tmp_path):
    trainer = Trainer(tiny_progressive_config, tmp_path)
    trainer.train()
    evaluation = trainer.evaluate()
    written = plot_run(trainer, evaluation=evaluation)
    assert set(written) == {"training_curves", "variable_information", "latent_traversals", "reconstructions",
                            "structure_graph", "information_flow"}
    for path in written.values():
        _assert_png(path, min_width=50)
