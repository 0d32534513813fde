import copy

import pytest

# A model and data small enough that a training step takes milliseconds.
TINY = {
    "data": {"name": "digits", "subset": 96},
    "model": {"name": "conv_hfvae", "num_classes": 3, "style_dim": 2, "hidden_dim": 16, "architecture": "mlp"},
    "objective": {"name": "hfvae", "beta": 4.0, "gamma": 3.0},
    "training": {"steps": 6, "batch_size": 16, "checkpoint_every": 2, "log_every": 1, "seed": 1},
    "evaluation": {"preset": "none", "information_points": 64},
}

# pro-VLAE: a two-level ladder grown with a progressive schedule and the per-site HIT loss.
TINY_PROGRESSIVE = {
    "data": {"name": "digits", "subset": 96},
    "model": {"name": "vlae", "levels": 2, "latent_dim": 1, "channels": 4, "hidden_dim": 8},
    "objective": {"name": "hit"},
    "schedule": {"name": "progressive", "steps_per_level": 3, "fade_in_steps": 2},
    "training": {"steps": 6, "batch_size": 16, "checkpoint_every": 2, "log_every": 1, "seed": 2},
    "evaluation": {"preset": "none", "information_points": 64},
}


@pytest.fixture
def tiny_config():
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_progressive_config():
    return copy.deepcopy(TINY_PROGRESSIVE)
