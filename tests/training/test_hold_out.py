import json

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_hfvae.datasets import Shapes3D
from pyro_hfvae.training._random_batches import _RandomBatches
from pyro_hfvae.training.config import ConfigError, dumps_config, load_config
from pyro_hfvae.training.trainer import CONFIG_FILE, Trainer

from ..datasets.conftest import write_shapes3d

# The fabricated 3DShapes grid: floor_hue 2, wall_hue 2, object_hue 2, scale 3, shape 2, orientation 2 (96 items).
HOLD_OUT = {"scale": [2], "shape": [1]}


@pytest.fixture
def shapes3d_config(tiny_config, tmp_path):
    path = tmp_path / "3dshapes.h5"
    write_shapes3d(path, order=np.random.default_rng(4).permutation(96))
    tiny_config["data"] = {"name": "shapes3d", "path": str(path), "hold_out": dict(HOLD_OUT)}
    tiny_config["model"]["num_classes"] = 0
    return tiny_config


def _held_out_by_labels(path):
    """Held-out indices computed from the file's label values, independently of the data set's classes."""
    factors = Shapes3D(path).factors_of(np.arange(96))
    return set(np.flatnonzero((factors[:, 3] == 2) & (factors[:, 4] == 1)).tolist())


@pytest.mark.parametrize("subset", [0, 40])
def test_trainer_never_sees_held_out_items(shapes3d_config, tmp_path, monkeypatch, subset):
    shapes3d_config["data"]["subset"] = subset
    drawn = []
    next_batch = _RandomBatches.next

    def spy(self):
        positions = next_batch(self)
        drawn.append(positions.clone())
        return positions

    monkeypatch.setattr(_RandomBatches, "next", spy)
    trainer = Trainer(shapes3d_config, tmp_path / "run")
    read = []
    observations = trainer.dataset.observations
    trainer.dataset.observations = lambda indices: read.append(torch.as_tensor(indices).clone()) or observations(
        indices)
    assert trainer.train()
    held_out = _held_out_by_labels(shapes3d_config["data"]["path"])
    assert len(held_out) == 16
    assert trainer.dataset_size == (subset or 80)
    train = set(trainer.train_indices.tolist())
    assert len(train) == trainer.dataset_size and not train & held_out
    seen = {int(trainer.train_indices[p]) for batch in drawn for p in batch}
    seen_read = {int(i) for batch in read for i in batch}
    assert drawn and seen and not seen & held_out and not seen_read & held_out
    assert seen_read <= train
    # The run's config keeps the hold-out, so a resumed run holds out the same items.
    written = load_config(tmp_path / "run" / CONFIG_FILE)
    assert written["data"]["hold_out"] == HOLD_OUT


def test_config_round_trips_hold_out():
    text = dumps_config({"data": {"name": "dsprites", "hold_out": {"shape": [0], "posX": [22, 23]}}})
    assert 'hold_out = {shape = [0], posX = [22, 23]}' in text


@pytest.mark.parametrize("hold_out, match", [
    ({"shap": [1]}, r"\[data\] hold_out: expected hold-out factor names from 'floor_hue', 'wall_hue', 'object_hue', "
                    r"'scale', 'shape', 'orientation' but got 'shap'; did you mean 'shape'\?"),
    ({"scale": [3]}, r"\[data\] hold_out: expected classes of factor 'scale' in \[0, 3\) but got 3"),
    ({"scale": [0.5]}, r"\[data\] hold_out: expected integer classes of factor 'scale'"),
    ({"scale": 2}, r"\[data\] hold_out: expected a list of classes of factor 'scale'"),
    ({"shape": [0, 1]}, r"\[data\] hold_out: expected a hold-out that leaves items to train on but "
                        r"\{'shape': \[0, 1\]\} holds out all 96 items of Shapes3D"),
    ([1], r"expected \[data\] hold_out to be a table"),
])
def test_bad_hold_out_fails_before_the_run_directory(shapes3d_config, tmp_path, hold_out, match):
    shapes3d_config["data"]["hold_out"] = hold_out
    with pytest.raises(ConfigError, match=match):
        Trainer(shapes3d_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_subset_larger_than_the_held_in_items(shapes3d_config, tmp_path):
    shapes3d_config["data"]["subset"] = 81
    with pytest.raises(ConfigError, match=r"expected \[data\] subset <= 80 \(the held-in items of shapes3d\) but "
                                          r"got 81"):
        Trainer(shapes3d_config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_held_in_items(shapes3d_config, tmp_path):
    shapes3d_config["data"]["hold_out"] = {"shape": [1]}
    shapes3d_config["training"]["batch_size"] = 49
    with pytest.raises(ConfigError, match=r"batch_size <= the number of training items \(48\) but got 49"):
        Trainer(shapes3d_config, tmp_path / "run")


def test_neighbours_share_part_of_the_held_out_combination(shapes3d_config):
    dataset = Shapes3D(shapes3d_config["data"]["path"])
    assert len(dataset.held_out_neighbour_indices()) == 0  # nothing held out
    dataset.hold_out = HOLD_OUT
    factors = dataset.factors_of(np.arange(96))
    scale_2, shape_1 = factors[:, 3] == 2, factors[:, 4] == 1
    expected = np.flatnonzero((scale_2 | shape_1) & ~(scale_2 & shape_1))
    assert np.array_equal(dataset.held_out_neighbour_indices(), expected)
    assert len(expected) == 32 + 48 - 2 * 16
    dataset.hold_out = lambda f: (f[:, 3] == 2) & (f[:, 4] == 1)  # a predicate: every held-in item
    assert np.array_equal(dataset.held_out_neighbour_indices(), np.flatnonzero(~(scale_2 & shape_1)))


def test_evaluation_reports_the_held_out_combinations(shapes3d_config, tmp_path):
    from pyro.infer import Trace_ELBO

    from pyro_hfvae.training._run_evaluation import _hold_out_summary

    shapes3d_config["evaluation"] = {"preset": "fast", "metrics": ["mig"], "information_points": 40}
    trainer = Trainer(shapes3d_config, tmp_path / "run")
    trainer.train()
    result = trainer.evaluate()
    assert sorted(result["hold_out"]) == ["held_in_neighbours", "held_out"]
    assert result["hold_out"]["held_out"]["items"] == 16
    assert result["hold_out"]["held_in_neighbours"]["items"] == 40  # 48 neighbours, at most 40 of them
    # Independently: the same items, the same random draws, Trace_ELBO and the reconstructions.
    dataset, model = trainer.dataset, trainer.model
    with torch.no_grad():
        pyro.set_rng_seed(7)
        summary = _hold_out_summary(dataset, model, {}, trainer.device, 40, seed=0)
        pyro.set_rng_seed(7)
        random_state = np.random.RandomState(0)
        for name, indices in (("held_out", dataset.held_out_indices()),
                              ("held_in_neighbours", dataset.held_out_neighbour_indices())):
            chosen = np.sort(random_state.choice(indices, min(40, len(indices)), replace=False))
            x = dataset.observations(torch.from_numpy(chosen))
            elbo = -Trace_ELBO().loss(model.model, model.guide, x) / len(chosen)
            error = ((model.reconstruct(x) - x) ** 2).flatten(1).sum(1).mean().item()
            assert summary[name]["elbo"] == pytest.approx(elbo, rel=1e-6)
            assert summary[name]["reconstruction_error"] == pytest.approx(error, rel=1e-5)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["hold_out"] == result["hold_out"]


def test_summary_shows_the_held_out_combinations(shapes3d_config, tmp_path):
    from pyro_hfvae.training.run_summary import write_summary

    shapes3d_config["evaluation"] = {"preset": "none", "information_points": 40}
    trainer = Trainer(shapes3d_config, tmp_path / "run")
    trainer.train()
    result = trainer.evaluate()
    text = write_summary(tmp_path / "run").read_text()
    assert "## Unseen factor combinations" in text
    held_out = result["hold_out"]["held_out"]
    assert f"| held-out combinations | 16 | {held_out['elbo']:.2f} |" in text


class _ConfidentConcrete:
    """A Concrete(3) class whose posterior is so confident that its float32 sample underflows."""

    weights = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-1.5, 0.0]])

    def model(self, x):
        with pyro.plate("data", len(x)):
            y = pyro.sample("y", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=torch.zeros(3)))
            pyro.sample("x", dist.Normal(y @ self.weights, 1.0).to_event(1), obs=x)

    def logits(self, x):
        return torch.tensor([0.0, 90.0, 0.0]) + x.sum(-1, keepdim=True)

    def guide(self, x):
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.RelaxedOneHotCategorical(torch.tensor(0.5), logits=self.logits(x)))

    def reconstruct(self, x):
        return self.logits(x).softmax(-1) @ self.weights


class _Items:
    def __init__(self):
        self.data = torch.linspace(-1.0, 1.0, 16).reshape(8, 2)

    def held_out_indices(self):
        return np.arange(4)

    def held_out_neighbour_indices(self):
        return np.arange(4, 8)

    def observations(self, indices):
        return self.data[indices]


def test_hold_out_elbo_of_a_confident_concrete_is_exact_where_trace_elbo_is_nan():
    from pyro.infer import Trace_ELBO
    from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

    from pyro_hfvae.poutine import ConcreteLogValueMessenger
    from pyro_hfvae.training._run_evaluation import _hold_out_summary

    model, items = _ConfidentConcrete(), _Items()
    x = items.observations(np.arange(4))
    pyro.set_rng_seed(0)
    with pytest.warns(UserWarning, match="Encountered NaN"):  # the relaxed density fails here
        assert not np.isfinite(Trace_ELBO().loss(model.model, model.guide, x))
    pyro.set_rng_seed(0)
    summary = _hold_out_summary(items, model, {}, torch.device("cpu"), 4, seed=0)
    # Independently, in float64: the same draws' exact logarithms under the ExpConcrete densities.
    pyro.set_rng_seed(0)
    expected = {}
    for name in ("held_out", "held_in_neighbours"):
        x = items.observations(np.arange(4) if name == "held_out" else np.arange(4, 8))
        trace = pyro.poutine.trace(ConcreteLogValueMessenger()(model.guide)).get_trace(x)
        value = trace.nodes["y"]["value"]
        log_value = value._concrete_log_value.double()
        half = torch.tensor(0.5, dtype=torch.float64)
        log_q = ExpRelaxedCategorical(half, logits=model.logits(x).double()).log_prob(log_value)
        log_p = ExpRelaxedCategorical(half, logits=torch.zeros(3, dtype=torch.float64)).log_prob(log_value)
        loc = value.double() @ model.weights.double()
        log_lik = torch.distributions.Normal(loc, 1.0).log_prob(x.double()).sum(-1)
        expected[name] = float((log_lik + log_p - log_q).mean())
    for name in expected:
        assert np.isfinite(summary[name]["elbo"])
        assert summary[name]["elbo"] == pytest.approx(expected[name], rel=1e-5)
