# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""The benchmarks' one timing loop: calls interleaved round by round, so that machine noise hits each alike."""
import statistics
import time
from collections.abc import Callable, Mapping

import torch


def interleaved_median_ms(calls: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 0, inner: int = 1,
                          device: torch.device | str = "cpu") -> dict[str, float]:
    """
    Milliseconds per call of each of ``calls``: ``warmup`` untimed rounds, then ``repeats`` timed
    rounds; a round calls each in turn ``inner`` times. CUDA work is waited for before and after
    each timing.

    :returns: name -> the median over the timed rounds of the milliseconds per call.
    """
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = {name: [] for name in calls}
    for round_ in range(warmup + repeats):
        for name, call in calls.items():
            synchronize()
            start = time.perf_counter()
            for _ in range(inner):
                call()
            synchronize()
            if round_ >= warmup:
                times[name].append((time.perf_counter() - start) * 1000 / inner)
    return {name: statistics.median(values) for name, values in times.items()}
