# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
The agreement of the ranks of a global batch (private to :class:`~pyro_hfvae.infer.hfvae.HFVAELoss`
with ``global_batch=True``): every particle exchanges one row per rank before the collectives of
the marginals, so that a failure on one rank or a structure that differs between ranks raises on
every rank instead of leaving the others waiting in a collective.
"""
import dataclasses
import functools
import hashlib
import operator
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from pyro_hfvae.ops.distributed import PeerRankError, gather_rows, rank_and_world_size
from pyro_hfvae.poutine.groups import GroupNode
from pyro_hfvae.poutine.plate_layout import PlateLayout

if TYPE_CHECKING:
    from pyro_hfvae.infer._structure import DataSite
    from pyro_hfvae.infer.hfvae import HFVAELoss


def structure_summary(loss: "HFVAELoss", layout: PlateLayout | None, data_sites: dict, var_ndims: dict,
                      num_vars: dict, tree: GroupNode | None, labelled_tree: GroupNode | None, partial: dict,
                      weighted: bool) -> str:
    """
    What the ranks must share for the collectives of the global-batch marginals to match: the
    structure of a model/guide pair but the local batch size, and ``loss``'s settings.
    """
    if len(data_sites) > 62:  # agree_across_ranks exchanges one bit per site in an int64
        raise ValueError(f"{loss.loss_name} with global_batch=True expected at most 62 latent sites in the "
                         f"data plate but got {len(data_sites)}; put several variables in one site")
    return repr((
        None if layout is None else dataclasses.replace(layout, batch_size=0, subsampled=False),
        [(name, _shape_but_data_axis(layout, s), str(s.value.dtype), var_ndims[name], num_vars[name])
         for name, s in data_sites.items()],
        None if tree is None else [(n.path, n.sites) for n in tree.internal_nodes()],
        None if labelled_tree is None else [(n.path, n.sites) for n in labelled_tree.internal_nodes()],
        sorted(partial), weighted, loss._config_key(), loss.num_particles,
        loss.vectorize_particles,
    ))


def agree_across_ranks(loss_name: str, summary: str | None, batch_size: int, mixture: int,
                       error: BaseException | None) -> tuple[tuple[int, ...], int]:
    """
    With ``global_batch``: the one exchange of every particle before the collectives of the
    marginals, which every rank reaches on every path (its errors deferred to it). Raises
    on every rank alike if a rank failed before it or the ranks' structures differ; else
    returns every rank's local batch size and the union of the ranks' ``mixture`` bit masks
    (the data sites whose prior depends on the data point: a rank with one data point
    cannot tell).
    """
    rank, world_size = rank_and_world_size()
    digest = -1
    if summary is not None:
        digest = int.from_bytes(hashlib.blake2b(summary.encode(), digest_size=7).digest(), "little")
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    status = torch.tensor([[int(error is not None), digest, batch_size, mixture]], dtype=torch.int64,
                          device=device)
    with torch.no_grad():
        failed, digests, sizes, mixtures = (tuple(column) for column in gather_rows(status)[0].T.tolist())
    if error is not None:
        raise error
    if any(failed):
        raise PeerRankError(
            f"{loss_name} with global_batch=True: rank(s) {[r for r, f in enumerate(failed) if f]} of "
            f"{world_size} failed before the global-batch marginals (see their error); this rank ({rank}) stops "
            "too instead of waiting for them"
        )
    if len(set(digests)) > 1:
        raise ValueError(
            f"{loss_name} with global_batch=True expected every rank to call it with the same structure "
            f"(data-plate latent sites and their shapes but the batch size, groups, weights, particles, "
            f"gradient mode) but got structure digests {list(digests)} by rank; rank "
            f"{rank} has {summary}. Call the loss alike on every rank (the same model, guide and method)"
        )
    return sizes, functools.reduce(operator.or_, mixtures)


def _shape_but_data_axis(layout: PlateLayout, data_site: "DataSite") -> tuple:
    """The shape of a data site's value with its data axis as ``-1`` (the local batch size may differ by rank)."""
    shape = list(data_site.value.shape)
    shape[data_site.batch_ndim + layout.data_dim] = -1
    return tuple(shape)
