# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
r"""
Data-parallel training on :mod:`torch.distributed` (see :doc:`/scaling_out`).

Launched by ``torchrun``, every process (rank) runs the same training loop on its own shard
of every global batch; the ranks average their parameter gradients before each update, so the
parameters stay identical on every rank. Pyro keeps its parameters in the param store and
calls the modules itself, so :class:`~torch.nn.parallel.DistributedDataParallel`'s module
wrapper never sees the gradients: :class:`DistributedOptimizer` averages them instead, as
:class:`pyro.optim.HorovodOptimizer` does with Horovod. With every rank's loss scaled to the
data set (``N / B_local`` for its data plate) and the gradients averaged, an update equals the
single-process update of the global batch for objectives that are sums over data points
(``Trace_ELBO``, :class:`~pyro_hfvae.infer.hit.HITLoss`); the aggregate-posterior marginals of
:class:`~pyro_hfvae.HFVAELoss` need the global batch as well (:mod:`pyro_hfvae.ops.distributed`).

:func:`init_process_group_from_env` starts the process group from ``torchrun``'s environment;
:class:`~pyro_hfvae.training.trainer.Trainer` calls it itself when it finds that environment.
The rest of this module is the trainer's private protocol: which rows a rank reads, the one
small status exchange per step that stops every rank together, and the gathering of every
rank's random generator states into rank 0's checkpoint.
"""
import datetime
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyro
import torch
import torch.distributed as dist
from pyro.optim import PyroOptim

from pyro_hfvae.infer.terms_elbo import NonFiniteLossError
from pyro_hfvae.ops.distributed import PeerRankError
from pyro_hfvae.training.config import ConfigError
from pyro_hfvae.training.grouped_optim import GroupedOptim

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMEOUT",
    "DistributedOptimizer",
    "init_process_group_from_env",
]

#: How long a collective waits for the other ranks before it fails: long enough for rank 0's
#: periodic evaluation (the others wait for it), short enough that a rank that died unnoticed
#: does not hold the others for ever (``torchrun`` stops the others as soon as one fails).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)

# What torchrun (and torch.distributed.launch) set for every process.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _all_reduce_timed(tensor: torch.Tensor, group) -> float:
    """``all_reduce``s ``tensor`` (a sum) in place; the seconds it took."""
    started = time.perf_counter()
    dist.all_reduce(tensor, group=group)
    return time.perf_counter() - started


def _average_gradients(params: Sequence[torch.Tensor], group: "dist.ProcessGroup | None" = None) -> float:
    """
    Replaces every parameter's ``.grad`` by its mean over the ranks of ``group``, with one
    ``all_reduce`` per device and dtype. A parameter without a gradient counts as a zero
    gradient; it keeps no gradient only where no rank has one (so that every rank's optimiser
    steps the same parameters). Every rank must pass the same parameters in the same order.

    :returns: the seconds spent in the ``all_reduce`` calls.
    """
    seconds = 0.0
    world_size = dist.get_world_size(group)
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    for (device, dtype), bucket in buckets.items():
        present = torch.tensor([p.grad is not None for p in bucket], dtype=dtype, device=device)
        flat = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in bucket]
                         + [present])
        seconds += _all_reduce_timed(flat, group)
        flat /= world_size
        offset = 0
        for p, here in zip(bucket, (flat[-len(bucket):] > 0).tolist()):
            grad = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
            if not here:
                p.grad = None
            elif p.grad is None:
                p.grad = grad.clone()
            else:
                p.grad.copy_(grad)
    return seconds


class DistributedOptimizer(GroupedOptim):
    """
    A :class:`~pyro_hfvae.training.grouped_optim.GroupedOptim` that averages every
    parameter's gradient over the ranks of a :mod:`torch.distributed` process group
    (``all_reduce``, then divided by the number of ranks) before it steps, like
    :class:`pyro.optim.HorovodOptimizer` with Horovod. The parameters are taken in the order
    of their names in the param store, so every rank reduces them alike; every rank must step
    the same parameters at every step. Its state (:meth:`get_state`) is in the format of
    :class:`~pyro.optim.optim.PyroOptim`, so checkpoints are interchangeable.

    :param pyro_optim: the optimiser to wrap, e.g. ``pyro.optim.Adam({"lr": 1e-3})``.
    :type pyro_optim: ~pyro.optim.optim.PyroOptim
    :param group: the process group (default: the world).

    Example (one process; under ``torchrun`` every rank does the same)::

        >>> import torch.distributed as dist
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> pyro.clear_param_store()
        >>> loc = pyro.param("loc", torch.zeros(2))
        >>> loc.unconstrained().grad = torch.ones(2)
        >>> optimizer = DistributedOptimizer(pyro.optim.SGD({"lr": 0.5}))
        >>> optimizer([loc.unconstrained()])
        >>> pyro.param("loc").detach()
        tensor([-0.5000, -0.5000])
        >>> dist.destroy_process_group()
    """

    def __init__(self, pyro_optim: PyroOptim, group: "dist.ProcessGroup | None" = None) -> None:
        super().__init__(pyro_optim.pt_optim_constructor, pyro_optim.pt_optim_args, pyro_optim.pt_clip_args)
        self.group = group
        #: Seconds spent in the gradient ``all_reduce`` so far (waiting for slower ranks included).
        self.communication_seconds = 0.0

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        params = sorted(params, key=pyro.get_param_store().param_name)
        self.communication_seconds += _average_gradients(params, self.group)
        super().__call__(params, *args, **kwargs)


def _missing_environment() -> list[str]:
    return [name for name in _ENVIRONMENT if name not in os.environ]


def init_process_group_from_env(device: torch.device | str = "cpu",
                                timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> torch.device:
    """
    Initialises the default process group from ``torchrun``'s environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL for CUDA, where
    this process takes the device ``cuda:LOCAL_RANK``, and gloo otherwise.

    :param device: the training device (``"cpu"``, ``"cuda"``; an index is replaced by ``LOCAL_RANK``).
    :param datetime.timedelta timeout: how long a collective waits for the other ranks.
    :returns: this process's device.
    :rtype: torch.device
    :raises RuntimeError: if the environment lacks one of the variables ``torchrun`` sets.
    """
    missing = _missing_environment()
    if missing:
        raise RuntimeError(f"expected the environment of torchrun ({', '.join(_ENVIRONMENT)}) but {missing} "
                           "are not set; launch with torchrun --nproc_per_node=N")
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    logger.info("process group initialised: rank %d of %d, %s backend, device %s", dist.get_rank(),
                dist.get_world_size(), dist.get_backend(), device)
    return device


def _rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random generators: ``seed`` on rank 0, an independent seed on the others."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


class _DataParallel:
    """
    The trainer's side of a data-parallel run: this rank's rows of every global batch, the status
    exchange that keeps the ranks in step, and the gathering of the ranks' random states.

    :param int rank: this process's rank.
    :param int world_size: the number of ranks (at least 2).
    :param torch.device device: where the exchanged tensors live (CUDA for NCCL).
    """

    def __init__(self, rank: int, world_size: int, device: torch.device, group=None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.group = group
        #: Seconds spent in the status exchanges (waiting for slower ranks included).
        self.communication_seconds = 0.0

    def rows(self, batch_size: int) -> slice:
        """
        This rank's rows of a global batch of ``batch_size`` (``[r B / W, (r + 1) B / W)``).

        :raises ConfigError: if ``batch_size`` is not a multiple of the number of ranks.
        """
        if batch_size % self.world_size:
            lower, upper = batch_size - batch_size % self.world_size, batch_size - batch_size % self.world_size \
                + self.world_size
            raise ConfigError(f"expected [training] batch_size (the global batch) to be a multiple of the number of "
                              f"processes ({self.world_size}) but got {batch_size}; use {lower or upper} or "
                              f"{upper}, or launch another number of processes")
        local = batch_size // self.world_size
        return slice(self.rank * local, (self.rank + 1) * local)

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copies rank 0's parameters and buffers to every rank (as ``DistributedDataParallel`` does)."""
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0, group=self.group)

    def _reduce(self, values: Sequence[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.communication_seconds += _all_reduce_timed(tensor, self.group)
        return tensor.tolist()

    def agree(self, step: int, failure: BaseException | None, loss: float, terms: Mapping[str, float],
              stop: bool) -> tuple[float, dict[str, float], bool]:
        """
        The status exchange of a step, after every rank computed its loss and gradients and before
        they are averaged: whether a rank failed or was asked to stop, and the mean over the ranks
        of the loss and the terms (those of the global batch: every rank's are scaled to the
        data set).

        :returns: ``(loss, terms, stop)``, the same on every rank.
        :raises NonFiniteLossError: on every rank alike, with the first failed rank's message,
            if a rank's step diverged; another error of a rank is re-raised there, and the
            others raise a ``RuntimeError`` naming it. A rank that failed only because another
            did (:class:`~pyro_hfvae.ops.distributed.PeerRankError`, from the loss's global-batch
            collectives) counts as one that did not fail.
        """
        failed, stop_count, total = self._reduce([failure is not None, bool(stop), 0.0 if failure else loss])
        if failed:
            report = None if failure is None else (type(failure).__name__, str(failure),
                                                   isinstance(failure, NonFiniteLossError),
                                                   isinstance(failure, PeerRankError))
            reports: list = [None] * self.world_size
            dist.all_gather_object(reports, report, group=self.group)
            failed_ranks = [r for r, report in enumerate(reports) if report is not None]
            first = next((r for r in failed_ranks if not reports[r][3]), failed_ranks[0])  # where it started
            kind, message, diverged, _ = reports[first]
            if isinstance(failure, PeerRankError) and first != self.rank:
                failure = None
            if diverged:
                from pyro_hfvae.training._divergence import ExplodingLossError

                error_type = ExplodingLossError if kind == "ExplodingLossError" else NonFiniteLossError
                raise error_type(f"{message} (on rank {first} of {self.world_size})")
            if failure is not None:
                raise failure
            raise RuntimeError(f"expected every rank to complete step {step} but rank {first} failed with {kind}: "
                               f"{message}")
        names = sorted(terms)
        means = self._reduce([terms[name] for name in names]) if names else []
        terms = {name: value / self.world_size for name, value in zip(names, means)}
        return total / self.world_size, terms, stop_count > 0

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value, group=self.group)
        return values


def _data_parallel(device: torch.device) -> tuple["_DataParallel | None", torch.device]:
    """
    The data-parallel context of this process and its device: the initialised default process
    group, else one initialised from ``torchrun``'s environment (``WORLD_SIZE`` above 1);
    ``(None, device)`` in a single process.
    """
    if not dist.is_available():
        return None, device
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None, device
        if device.type == "cuda" and device.index is not None:
            raise ConfigError(f"expected [training] device = 'cuda' or 'auto' in a data-parallel run (every rank "
                              f"takes cuda:LOCAL_RANK) but got '{device}'")
        device = init_process_group_from_env(device)
    if dist.get_world_size() <= 1:
        return None, device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        raise ConfigError(f"expected a CUDA [training] device with the NCCL backend but got '{device}'; use "
                          "device = 'cuda' or the gloo backend")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _DataParallel(dist.get_rank(), dist.get_world_size(), device), device
