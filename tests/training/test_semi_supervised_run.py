"""The shipped semi-supervised configuration trains on digits: labelled batches (chosen per position in the epoch
by [model] label_fraction and the seed) add the classifier term, the others do not."""
import pytest
import torch

from pyro_hfvae.models import ModelProtocol, SemiSupervisedHFVAE
from pyro_hfvae.training import Trainer
from pyro_hfvae.training.config import load_config


def _tiny(label_fraction, steps=6, seed=3):
    config = load_config("hfvae_mnist_ss")
    config["data"] = {"name": "digits", "subset": 96}
    config["model"].update(hidden_dim=16, style_hidden_dim=8, label_fraction=label_fraction)
    config["training"].update(steps=steps, batch_size=16, seed=seed, log_every=1, checkpoint_every=0)
    config["evaluation"]["preset"] = "none"
    return config


def _expected_supervised(trainer, positions):
    # (1/B) sum_b log q(y = label_b | x_b): the mean log-softmax of the class logits at the labels.
    x = trainer.observations(positions)
    labels = torch.as_tensor(trainer.dataset.labels)[trainer.train_indices[positions]]
    with torch.no_grad():
        logits = trainer.model.class_head(trainer.model.encoder(x))
        return logits.log_softmax(-1)[torch.arange(len(x)), labels].mean().item()


def test_semi_supervised_config_trains_on_digits():
    trainer = Trainer(_tiny(0.5))
    assert isinstance(trainer.model, SemiSupervisedHFVAE) and isinstance(trainer.model, ModelProtocol)
    assert trainer.loss.supervised_weight == 0.1
    labelled = [trainer.model.labelled_batch(b, seed=3) for b in range(6)]
    assert any(labelled) and not all(labelled)  # both kinds of batch within an epoch of 6 batches
    for step in range(6):
        state = trainer.sampler.state_dict()
        positions = trainer.sampler.next()
        trainer.sampler.load_state_dict(state)
        expected = _expected_supervised(trainer, positions)
        record = trainer.step()
        assert torch.isfinite(torch.tensor(record["loss"]))
        if labelled[step]:
            assert record["supervised"] == pytest.approx(expected, rel=1e-5)
            assert record["supervised"] < 0
        else:
            assert record["supervised"] == 0.0
    assert trainer.site_groups == {"y": "class", "z": "style"}  # the unsupervised trace names the plain sites


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_label_fraction_bounds(fraction):
    trainer = Trainer(_tiny(fraction, steps=3))
    records = [trainer.step() for _ in range(3)]
    assert all((r["supervised"] < 0) == (fraction == 1.0) for r in records)


def _expected_item_supervised(trainer, positions, known):
    # (1/B) sum over the labelled items of log q(y = label | x); the others add 0.
    x = trainer.observations(positions)
    labels = torch.as_tensor(trainer.dataset.labels)[trainer.train_indices[positions]]
    with torch.no_grad():
        logits = trainer.model.class_head(trainer.model.encoder(x))
        log_q = logits.log_softmax(-1)[torch.arange(len(x)), labels]
    return torch.where(known, log_q, 0.0).mean().item()


@pytest.mark.parametrize("seed", [0, 3])
def test_item_labels_are_a_fixed_subset_that_mixes_into_batches(seed):
    config = _tiny(0.25, steps=12, seed=seed)
    config["model"]["label_unit"] = "item"
    trainer = Trainer(config)
    known = trainer.model.labelled_items(96, seed)
    assert int(known.sum()) == 24
    # Not the first items of the first epoch's order (a generator shared with the batches would make them so).
    first_epoch = torch.randperm(96, generator=torch.Generator().manual_seed(seed))
    assert not known[first_epoch[:24]].all()
    for _ in range(12):
        state = trainer.sampler.state_dict()
        positions = trainer.sampler.next()
        trainer.sampler.load_state_dict(state)
        expected = _expected_item_supervised(trainer, positions, known[positions])
        record = trainer.step()
        assert record["supervised"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # Over two epochs the labelled items stay the same 24.
    assert torch.equal(trainer.model.labelled_items(96, seed), known)
