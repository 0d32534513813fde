# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""Argument checks and conversions shared by the metrics (private)."""

import numbers

import numpy as np
import torch

from pyro_hfvae.datasets.ground_truth_dataset import RandomStateLike
from pyro_hfvae.datasets.ground_truth_dataset import as_random_state as as_random_source


def as_random_state(random_state: RandomStateLike) -> np.random.RandomState:
    """
    ``random_state`` as a :class:`numpy.random.RandomState` (the metrics draw with its API, as
    disentanglement_lib does): an int seeds a fresh one, a RandomState is used as is, and a
    :class:`numpy.random.Generator` seeds a fresh one from its next draw.
    """
    source = as_random_source(random_state)
    if isinstance(source, np.random.Generator):
        return np.random.RandomState(int(source.integers(2**32)))
    return source


def torch_seed(random_state: np.random.RandomState) -> int:
    """A torch seed drawn from ``random_state`` (so torch sampling is reproducible under it)."""
    return int(random_state.randint(2**31 - 1))


def as_codes(codes, name: str = "codes") -> torch.Tensor:
    """
    Representation matrix as a floating tensor of shape (num_samples, num_codes).

    numpy arrays become CPU tensors without a copy; torch tensors keep their device and
    floating dtype (float16/bfloat16 are promoted to float32, integers to float64).
    """
    if isinstance(codes, torch.Tensor):
        tensor = codes.detach()
    else:
        array = np.asarray(codes)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(
                f"expected {name} to be a numeric array of shape (num_samples, num_codes) but got "
                f"dtype {array.dtype}; convert with np.asarray({name}, dtype=np.float64)"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dim() != 2:
        hint = f"; reshape with {name}.reshape(-1, 1)" if tensor.dim() == 1 else ""
        raise ValueError(
            f"expected {name} of shape (num_samples, num_codes) but got shape "
            f"{tuple(tensor.shape)}{hint}"
        )
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    elif not tensor.is_floating_point():
        tensor = tensor.double()
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"expected finite {name} but got NaN or inf in {bad_rows.numel()} of "
            f"{tensor.shape[0]} rows (first rows {bad_rows[:5].tolist()}); check the encoder for "
            "numerical problems or drop those rows"
        )
    return tensor


def as_factors(
    factors, num_samples: int | None = None, name: str = "factors", require_variation: bool = True
) -> np.ndarray:
    """
    Ground-truth factor classes as an int64 array of shape (num_samples, num_factors).

    Floating arrays are accepted only where every value is a whole number.
    """
    if isinstance(factors, torch.Tensor):
        factors = factors.detach().cpu().numpy()
    array = np.asarray(factors)
    if array.ndim != 2:
        hint = f"; reshape with {name}.reshape(-1, 1)" if array.ndim == 1 else ""
        raise ValueError(
            f"expected {name} of shape (num_samples, num_factors) but got shape {array.shape}{hint}"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            bad = array[~(np.isfinite(array) & (array == np.round(array)))][:3]
            raise ValueError(
                f"expected integer factor classes in {name} but got non-integer values such as "
                f"{bad.tolist()}; map each factor's values to classes first, e.g. "
                f"np.unique({name}[:, k], return_inverse=True)[1]"
            )
        array = array.astype(np.int64)
    elif not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"expected integer factor classes in {name} but got dtype {array.dtype}; "
            f"convert with np.asarray({name}).astype(np.int64)"
        )
    array = array.astype(np.int64, copy=False)
    if num_samples is not None and array.shape[0] != num_samples:
        raise ValueError(
            f"expected {name} with one row per code sample ({num_samples} rows) but got "
            f"{array.shape[0]} rows; pass the factors that generated the codes, in the same order"
        )
    if array.shape[1] == 0:
        raise ValueError(f"expected at least one factor in {name} but got shape {array.shape}")
    if require_variation:
        for k in range(array.shape[1]):
            values = np.unique(array[:, k])
            if values.size < 2:
                raise ValueError(
                    f"expected every factor to take at least 2 values but factor {k} of {name} "
                    f"takes the single value {values.tolist()} in these {array.shape[0]} samples "
                    f"(zero entropy, no classes to separate); drop it with np.delete({name}, "
                    f"{k}, axis=1) or sample more points"
                )
    return array


def check_min_columns(array_shape, minimum: int, name: str, why: str) -> None:
    if array_shape[1] < minimum:
        raise ValueError(
            f"expected at least {minimum} columns in {name} ({why}) but got shape "
            f"{tuple(array_shape)}"
        )


def as_train_test(codes_train, factors_train, codes_test, factors_test) -> tuple:
    """
    The train and test splits of codes and factors, converted and checked against each other
    (the test factors may lack variation).

    :returns: ``(codes_train, factors_train, codes_test, factors_test)``.
    """
    codes_train = as_codes(codes_train, "codes_train")
    codes_test = as_codes(codes_test, "codes_test")
    factors_train = as_factors(factors_train, codes_train.shape[0], "factors_train")
    factors_test = as_factors(factors_test, codes_test.shape[0], "factors_test", require_variation=False)
    if codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError(
            "expected codes_test with the same number of codes as codes_train "
            f"({codes_train.shape[1]}) but got {codes_test.shape[1]}; encode both splits with "
            "the same encoder"
        )
    if factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError(
            f"expected factors_test with the same number of factors as factors_train "
            f"({factors_train.shape[1]}) but got {factors_test.shape[1]}"
        )
    return codes_train, factors_train, codes_test, factors_test


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"expected {name} to be an integer >= {minimum} but got {value!r}")
    return int(value)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """CPU float64 numpy copy (scikit-learn works on host memory)."""
    return tensor.detach().to("cpu", torch.float64).numpy()
