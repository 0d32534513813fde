# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""
One torch optimiser for all the parameters that share their optimiser arguments, behind
:class:`~pyro.optim.optim.PyroOptim`'s interface and state format.
"""

from collections.abc import Callable, Iterable
from typing import Any

import pyro
import torch
from pyro.optim.lr_scheduler import PyroLRScheduler
from pyro.optim.optim import PyroOptim

__all__ = [
    "GroupedOptim",
]


def _hyperparameters(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}


def _group_key(hyperparameters: dict[str, Any]) -> tuple:
    # Lists (e.g. betas restored from a checkpoint) and tensors (a tensor lr) are not hashable.
    def hashable(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.reshape(-1).tolist()), str(value.dtype), str(value.device))
        if isinstance(value, (list, tuple)):
            return tuple(hashable(v) for v in value)
        return value

    return tuple(sorted((k, hashable(v)) for k, v in hyperparameters.items()))


class GroupedOptim(PyroOptim):
    r"""
    A :class:`~pyro.optim.optim.PyroOptim` that steps all the parameters with the same
    optimiser arguments through one torch optimiser, so that ``fused`` and ``foreach``
    implementations update them in one call. :class:`~pyro.optim.optim.PyroOptim` keeps one
    torch optimiser per parameter and pays its Python overhead (and, on a GPU, its kernel
    launches) once per parameter and step.

    Each parameter's update is the one :class:`~pyro.optim.optim.PyroOptim` makes (the
    optimisers here update element by element), and so is its state:
    :meth:`get_state` gives and :meth:`set_state` takes
    :class:`~pyro.optim.optim.PyroOptim`'s format (parameter name -> the state dict of a
    one-parameter optimiser), so that checkpoints of either load into the other. As with
    :class:`~pyro.optim.optim.PyroOptim`, a call steps only the parameters passed to it, new
    parameters join when first passed, per-parameter ``optim_args`` and ``clip_args``
    callables are honoured (parameters with different arguments get different torch
    optimisers), and a restored state brings its own arguments (a checkpoint's learning
    rate, say).

    :param type optim_constructor: a :class:`torch.optim.Optimizer` class, e.g.
        :class:`torch.optim.Adam` (learning-rate schedulers are not grouped: use
        :class:`~pyro.optim.lr_scheduler.PyroLRScheduler`).
    :param optim_args: the optimiser's keyword arguments, or a callable giving them per
        parameter name, as for :class:`~pyro.optim.optim.PyroOptim`.
    :type optim_args: dict or callable
    :param clip_args: gradient clipping arguments, as for :class:`~pyro.optim.optim.PyroOptim`.
    :type clip_args: dict or callable

    Example::

        >>> pyro.clear_param_store()
        >>> loc = pyro.param("loc", torch.zeros(2)).unconstrained()
        >>> scale = pyro.param("scale", torch.ones(3)).unconstrained()
        >>> optim = GroupedOptim(torch.optim.SGD, {"lr": 0.5})
        >>> loc.grad, scale.grad = torch.ones(2), torch.ones(3)
        >>> optim([loc, scale])
        >>> len(optim.optimizers), pyro.param("loc").tolist(), pyro.param("scale").tolist()
        (1, [-0.5, -0.5], [0.5, 0.5, 0.5])
        >>> sorted(optim.get_state())
        ['loc', 'scale']

    References

    [1] Pyro's :class:`~pyro.optim.optim.PyroOptim`, whose interface and state this keeps.
    """

    def __init__(self, optim_constructor: type, optim_args: dict | Callable[..., dict],
                 clip_args: dict | Callable[..., dict] | None = None) -> None:
        if not (isinstance(optim_constructor, type) and issubclass(optim_constructor, torch.optim.Optimizer)):
            raise TypeError(f"expected a torch.optim.Optimizer class (e.g. torch.optim.Adam) but got "
                            f"{optim_constructor!r}; wrap learning-rate schedulers in pyro.optim.PyroLRScheduler")
        super().__init__(optim_constructor, optim_args, clip_args)
        # hyperparameters -> (the torch optimiser, its parameters in the order they joined)
        self._groups: dict[tuple, tuple[torch.optim.Optimizer, list[torch.Tensor]]] = {}

    @classmethod
    def from_pyro_optim(cls, optim: PyroOptim) -> "GroupedOptim":
        """
        The grouped counterpart of a :class:`~pyro.optim.optim.PyroOptim` such as
        ``pyro.optim.Adam({"lr": 1e-3})``: the same constructor and arguments.

        :param optim: an optimiser of ``pyro.optim`` that wraps a torch optimiser.
        :rtype: GroupedOptim
        """
        if not isinstance(optim, PyroOptim) or isinstance(optim, PyroLRScheduler):
            raise TypeError(f"expected a pyro.optim optimiser wrapping a torch optimiser (e.g. "
                            f"pyro.optim.Adam({{'lr': 1e-3}})) but got {optim!r}")
        return cls(optim.pt_optim_constructor, optim.pt_optim_args, optim.pt_clip_args)

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The torch optimisers, one per set of optimiser arguments in use."""
        return [optimizer for optimizer, _ in self._groups.values()]

    def __call__(self, params: Iterable[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        """
        One optimisation step of the parameters ``params`` (unconstrained tensors, as
        :class:`~pyro.optim.optim.PyroOptim` takes them); parameters without a gradient are
        left unchanged, as torch's optimisers leave them.
        """
        passed = set()
        for p in params:
            if p not in self.optim_objs:
                self._join(p)
            if self.grad_clip[p] is not None:
                self.grad_clip[p](p)
            passed.add(p)
        for optimizer, members in self._groups.values():
            stepped = [p for p in members if p in passed]
            if stepped:
                optimizer.param_groups[0]["params"] = stepped
                optimizer.step(*args, **kwargs)

    def _join(self, p: torch.Tensor) -> None:
        # A one-parameter optimiser first: torch's load_state_dict casts a restored state to the
        # parameter's device and dtype and restores its arguments; it then serves as the group's
        # optimiser, or hands its state to the group with the same arguments.
        alone = self.pt_optim_constructor([p], **self._get_optim_args(p))
        saved = self._state_waiting_to_be_consumed.pop(pyro.get_param_store().param_name(p), None)
        if saved is not None:
            alone.load_state_dict(saved)
        key = _group_key(_hyperparameters(alone))
        if key in self._groups:
            optimizer, members = self._groups[key]
            if p in alone.state:
                optimizer.state[p] = alone.state[p]
            members.append(p)
        else:
            optimizer = alone
            self._groups[key] = (optimizer, [p])
        self.optim_objs[p] = optimizer
        self.grad_clip[p] = self._get_grad_clip(p)

    def get_state(self) -> dict[str, dict]:
        """
        The state in :class:`~pyro.optim.optim.PyroOptim`'s format: parameter name -> the
        state dict that a torch optimiser of that parameter alone would give.
        """
        store = pyro.get_param_store()
        state = {}
        for p, optimizer in self.optim_objs.items():
            own = {0: optimizer.state[p]} if p in optimizer.state else {}
            state[store.param_name(p)] = {"state": own, "param_groups": [dict(_hyperparameters(optimizer), params=[0])]}
        return state
