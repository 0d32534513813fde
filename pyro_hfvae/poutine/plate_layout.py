# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
Where the data plate and the vectorized-particle plate sit in a traced model/guide pair.

Objectives that score each data point (per-site rates, total correlations across a
batch) need the batch axis of every site. :class:`PlateLayout` finds the data plate
in a guide trace, reads the batch size ``B`` and the data-set size ``N`` from it, and
moves any site tensor into a canonical ``(particles, batch, ...)`` layout.
"""

import logging
from dataclasses import dataclass

import torch
from pyro.poutine import Trace

from pyro_hfvae.distributions.util import distribution_mask, latent_sites, variable_ndim

logger = logging.getLogger(__name__)

__all__ = [
    "PARTICLE_PLATE",
    "PlateLayout",
]

#: Name of the plate :class:`pyro.infer.ELBO` adds for ``vectorize_particles=True``.
PARTICLE_PLATE = "num_particles_vectorized"


def _frames(site: dict) -> dict:
    return {f.name: f for f in site["cond_indep_stack"] if f.vectorized}


def _plate_frames(sites: list[tuple[str, dict]], particle_frame=None) -> tuple[dict, object]:
    # The plates around ``sites`` (outermost first, in order of first appearance) and the particle plate.
    frames = {}
    for _, site in sites:
        for name, frame in _frames(site).items():
            if name == PARTICLE_PLATE:
                particle_frame = frame
            else:
                frames.setdefault(name, frame)
    return frames, particle_frame


@dataclass(frozen=True)
class PlateLayout:
    """
    Positions and sizes of the data and particle plates of one traced particle.

    :param str data_plate: name of the data plate.
    :param int data_dim: its (negative) batch dim.
    :param int batch_size: ``B``, the number of data points in the batch.
    :param dataset_size: ``N``, the data-set size (``None`` where not needed or not known).
    :param particle_dim: (negative) batch dim of the vectorized-particle plate, or ``None``.
    :param int num_particles: size of the particle plate (1 without one).
    :param bool subsampled: whether the data plate is subsampled (so Pyro scales its sites by ``N/B``).
    """

    data_plate: str
    data_dim: int
    batch_size: int
    dataset_size: int | None
    particle_dim: int | None
    num_particles: int
    subsampled: bool = False

    @classmethod
    def from_trace(
        cls,
        guide_trace: Trace,
        *,
        model_trace: Trace | None = None,
        data_plate: str | None = None,
        dataset_size: int | None = None,
        outermost: bool = False,
        loss_name: str = "this loss",
    ) -> "PlateLayout | None":
        """
        Finds the data plate among the plates of the guide's latent sites or, where no
        latent site of the guide is in a plate, among those of the model's sample sites
        (e.g. the observations of a model with only global latents).

        The data plate is ``data_plate`` where given, else the one subsampled plate
        (``size < full_size``), else the one vectorized plate. Where there are several
        and ``outermost=True``, it is the outermost plate of the first site in a plate;
        else that is an error.

        :param ~pyro.poutine.Trace guide_trace: a guide trace.
        :param ~pyro.poutine.Trace model_trace: the model trace replayed on it.
        :param str data_plate: the data plate's name, where the guide has several plates.
        :param int dataset_size: ``N`` where the plate does not carry it.
        :param bool outermost: pick the outermost of several plates instead of raising.
        :param str loss_name: the caller's name, for error messages.
        :returns: the layout, or ``None`` where no site is in a plate (nothing is local).
        """
        frames, particle_frame = _plate_frames(latent_sites(guide_trace))
        if not frames and model_trace is not None:
            sites = [(n, s) for n, s in model_trace.nodes.items() if s["type"] == "sample"]
            frames, particle_frame = _plate_frames(sites, particle_frame)
        if data_plate is not None:
            if data_plate not in frames:
                raise ValueError(
                    f"{loss_name} expected a data plate named {data_plate!r} around latent sites of the guide "
                    f"but found plates {sorted(frames)}; pass data_plate= one of those"
                )
            frame = frames[data_plate]
        else:
            subsampled = [f for f in frames.values() if f.full_size is not None and f.full_size > f.size]
            candidates = subsampled or list(frames.values())
            if not candidates:
                return None
            if len(candidates) > 1 and not outermost:
                raise ValueError(
                    f"{loss_name} expected one data plate but found plates {sorted(f.name for f in candidates)}; "
                    "pass data_plate='name' to say which one indexes data points"
                )
            frame = candidates[0]  # frames are in order: outermost plate of the first site first
        batch_size = frame.size
        subsampled_size = frame.full_size if frame.full_size is not None and frame.full_size > frame.size else None
        if dataset_size is not None:
            dataset_size = int(dataset_size)
            if subsampled_size is not None and dataset_size != subsampled_size:
                raise ValueError(
                    f"{loss_name} got dataset_size={dataset_size} but the data plate {frame.name!r} says "
                    f"size={subsampled_size}; drop dataset_size= or make them agree"
                )
        else:
            dataset_size = subsampled_size
        return cls(
            data_plate=frame.name,
            data_dim=frame.dim,
            batch_size=batch_size,
            dataset_size=dataset_size,
            particle_dim=None if particle_frame is None else particle_frame.dim,
            num_particles=1 if particle_frame is None else particle_frame.size,
            subsampled=subsampled_size is not None,
        )

    def require_marginals(self, loss_name: str = "this loss") -> None:
        """
        Checks that the batch supports minibatch-stratified marginals: ``N`` is known,
        ``B >= 2`` and ``N >= B``.

        :param str loss_name: the caller's name, for error messages.
        :raises ValueError: naming what is missing and how to give it.
        """
        if self.dataset_size is None:
            raise ValueError(
                f"{loss_name} needs the data-set size N, but the data plate {self.data_plate!r} is not subsampled "
                f"(it has size {self.batch_size} and no full size); use "
                "`pyro.plate('data', size=N, subsample=idx)` or pass dataset_size=N "
                f"(dataset_size={self.batch_size} if the batch is the whole data set)"
            )
        if self.batch_size < 2:
            raise ValueError(
                f"{loss_name} expected a batch of at least 2 data points (the marginals are estimated "
                f"from the batch) but got {self.batch_size}; use a larger batch"
            )
        if self.dataset_size < self.batch_size:
            raise ValueError(
                f"{loss_name} expected dataset_size >= batch size but got dataset_size={self.dataset_size} "
                f"and a batch of {self.batch_size}; pass the size of the whole data set"
            )

    def data_point_mask(self, site: dict, value: torch.Tensor, batch_ndim: int) -> torch.Tensor | None:
        """
        The mask of a sample site (``poutine.mask`` and ``Distribution.mask`` together) as a
        ``(P, B)`` mask of whole data points, or ``None`` where nothing is masked out.

        :param dict site: a sample site in the data plate.
        :param torch.Tensor value: its value.
        :param int batch_ndim: number of batch dims of ``value``.
        :rtype: torch.Tensor or None
        :raises ValueError: where the mask selects parts of a data point.
        """
        fn = site["fn"]
        num_variable_dims = variable_ndim(fn)
        mask = distribution_mask(fn)
        if site["mask"] is not None and site["mask"] is not True:
            site_mask = torch.as_tensor(site["mask"], dtype=torch.bool)
            site_mask = site_mask.reshape(site_mask.shape + (1,) * num_variable_dims)
            mask = site_mask if mask is None else mask & site_mask
        if mask is None:
            return None
        shape = value.shape[:batch_ndim] + fn.event_shape[:num_variable_dims]
        mask = self.front(mask.to(value.device).expand(shape), batch_ndim)
        mask = mask.reshape(mask.shape[:2] + (-1,))
        if not (mask.all(-1) == mask.any(-1)).all():
            raise ValueError(
                "expected masks on latent sites to select whole data points but this one masks parts of a "
                "data point; mask observed sites instead"
            )
        return mask[..., 0].expand(self.num_particles, self.batch_size)

    def in_data_plate(self, site: dict) -> bool:
        """Whether ``site`` is inside the data plate."""
        return self.data_plate in _frames(site)

    def front(self, tensor: torch.Tensor, batch_ndim: int, lead: int = 0) -> torch.Tensor:
        """
        Moves the particle and data axes of ``tensor`` to the front.

        :param torch.Tensor tensor: a tensor whose dims ``lead .. lead + batch_ndim`` are the
            site's batch dims (``lead`` extra dims before them stay after the two moved axes).
        :param int batch_ndim: number of batch dims.
        :param int lead: number of extra leading dims.
        :returns: a tensor of shape ``(P or 1, B or 1, *lead_dims, *rest)``.
        """
        need = -min(self.data_dim, self.particle_dim if self.particle_dim is not None else 0)
        if batch_ndim < need:
            # Left-pad missing (broadcast) batch dims.
            pad = need - batch_ndim
            tensor = tensor.reshape(tensor.shape[:lead] + (1,) * pad + tensor.shape[lead:])
            batch_ndim = need
        data_axis = lead + batch_ndim + self.data_dim
        if self.particle_dim is None:
            return tensor.movedim(data_axis, 0).unsqueeze(0)
        particle_axis = lead + batch_ndim + self.particle_dim
        return tensor.movedim((particle_axis, data_axis), (0, 1))

    def per_datum(self, tensor: torch.Tensor) -> torch.Tensor:
        """
        Sums a log-density tensor (all of whose dims are batch dims) over every dim but
        the particle and data axes.

        :param torch.Tensor tensor: a site's log density (or anything of its shape).
        :returns: a ``(P, B)`` tensor.
        """
        tensor = self.front(tensor, tensor.dim())
        tensor = tensor.reshape(tensor.shape[:2] + (-1,)).sum(-1)
        return tensor.expand(self.num_particles, self.batch_size)
