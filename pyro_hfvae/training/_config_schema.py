# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
What a run configuration may hold: the components each section may name (with the constructor
arguments the trainer fills in, and the options it reads itself), the settings of the sections
that name no component with their defaults and allowed values, and the order of the sections
(private: used by :mod:`pyro_hfvae.training.config`, which checks a configuration against them).
"""
from collections.abc import Callable
from typing import Any


def _dataset(name: str) -> Callable:
    from pyro_hfvae import datasets

    return getattr(datasets, name)


def _model(module: str, name: str) -> Callable:
    import importlib

    return getattr(importlib.import_module(f"pyro_hfvae.models.{module}"), name)


def _objective(name: str) -> Callable:
    if name == "HFVAELoss":
        from pyro_hfvae.infer.hfvae import HFVAELoss

        return HFVAELoss
    from pyro_hfvae.infer.hit import HITLoss

    return HITLoss


def _schedule() -> Callable:
    from pyro_hfvae.infer.progressive import ProgressiveSchedule

    return ProgressiveSchedule


def _optimizer(name: str) -> Callable:
    import pyro.optim

    return getattr(pyro.optim, name)


# name -> (lazy class, arguments filled in by the trainer and so not configurable)
_COMPONENTS: dict[str, dict[str, tuple[Callable[[], Callable], frozenset]]] = {
    "data": {
        "digits": (lambda: _dataset("Digits"), frozenset({"return_factors", "device"})),
        "dsprites": (lambda: _dataset("DSprites"), frozenset({"return_factors", "device"})),
        "fashion_mnist": (lambda: _dataset("FashionMNIST"), frozenset({"return_factors", "device"})),
        "mnist": (lambda: _dataset("MNIST"), frozenset({"return_factors", "device"})),
        "shapes3d": (lambda: _dataset("Shapes3D"), frozenset({"return_factors", "device"})),
    },
    "model": {
        "conv_hfvae": (lambda: _model("conv_hfvae", "ConvHFVAE"), frozenset({"image_shape"})),
        # ``name`` (the pyro.module name) would clash with the section's component name.
        "hierarchical_vae": (lambda: _model("hierarchical_vae", "HierarchicalVAE"), frozenset({"image_shape", "name"})),
        "ladder_vae": (lambda: _model("ladder_vae", "LadderVAE"), frozenset({"image_shape", "name"})),
        "semi_supervised_hfvae": (lambda: _model("semi_supervised", "SemiSupervisedHFVAE"), frozenset({"image_shape"})),
        "vlae": (lambda: _model("vlae", "VLAE"), frozenset({"image_shape"})),
    },
    "objective": {
        "hfvae": (
            lambda: _objective("HFVAELoss"),
            # ``kernel`` is set by the ``compile`` option (_OBJECTIVE_OPTIONS).
            frozenset({"dataset_size", "max_plate_nesting", "strict_enumeration_warning", "retain_graph", "kernel"}),
        ),
        "hit": (
            lambda: _objective("HITLoss"),
            frozenset({"dataset_size", "max_plate_nesting", "strict_enumeration_warning", "retain_graph"}),
        ),
    },
    "schedule": {
        "progressive": (_schedule, frozenset({"levels"})),
    },
    "optimizer": {
        "adam": (lambda: _optimizer("Adam"), frozenset()),
        "clipped_adam": (lambda: _optimizer("ClippedAdam"), frozenset()),
    },
}

# Keyword options of the pyro.optim wrappers (they take one dict of torch optimiser arguments).
_OPTIMIZER_OPTIONS = {
    "adam": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "fused": True},
    "clipped_adam": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 10.0,
                     "lrd": 1.0},
}

# Data-set options that the trainer reads itself (not constructor arguments): ``subset`` (train on that many
# items, 0: all) and ``hold_out`` ({factor_name: classes}: the factor combinations left out of training, see
# GroundTruthDataset.hold_out).
_DATA_OPTIONS = {"subset": 0, "hold_out": {}}
# Objective options that the trainer reads itself or sets otherwise than the constructor's default:
# ``compile = true`` trains with :class:`~pyro_hfvae.infer.jit.JitHFVAELoss`, the HFVAE loss with torch.compile'd
# kernels; ``global_batch`` (default true here): in a data-parallel run (torchrun), estimate HFVAE's
# aggregate-posterior marginals over the global batch (false in a single process, whose batch is global);
# ``warmup_steps`` > 0: train the first that many steps with HITLoss, each latent site's rate weighted by
# ``warmup_betas`` (site or group name -> weight; 1 for the others) and Concrete sites scored as the HFVAE
# loss scores them, then with the HFVAE loss (a style bottleneck first: docs/mnist_results.md).
_OBJECTIVE_OPTIONS = {"hfvae": {"global_batch": True, "compile": False, "warmup_steps": 0, "warmup_betas": {}}}

#: Settings of the sections that name no component: key -> default.
_PLAIN_SECTIONS: dict[str, dict[str, Any]] = {
    "training": {
        "steps": 2000,
        "batch_size": 64,
        "seed": 0,
        "device": "auto",
        # Pyro steps on small networks gain little from several CPU threads, and OpenMP threads that
        # wait for a busy core cost up to 10x the CPU time (measured on a shared 2-core machine).
        "num_threads": 1,
        # glibc malloc keeps freed memory for the next step (pyro_hfvae.training.allocator): 17 % faster steps on a CPU.
        "retain_freed_memory": True,
        # Subnormal floats as zero (torch.set_flush_denormal): Adam's moments of weights that never get a
        # gradient (dSprites' empty border pixels) decay into subnormals, which tripled fused Adam's time.
        "flush_denormal": True,
        "log_every": 10,
        "checkpoint_every": 500,
        "eval_every": 0,
    },
    "evaluation": {
        "preset": "auto",
        "metrics": [],
        "num_train": 0,
        "num_test": 0,
        "information_points": 0,
        "seed": 0,
    },
}

_CHOICES = {
    ("evaluation", "preset"): ("auto", "fast", "full", "none"),
}

#: Sections in the order a configuration file lists them.
SECTIONS = ("data", "model", "objective", "schedule", "optimizer", "training", "evaluation")
