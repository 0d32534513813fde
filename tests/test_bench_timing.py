# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/_timing.py: the rounds, the calls per round and the medians."""


def test_interleaved_rounds_and_medians(load_benchmark, monkeypatch):
    timing = load_benchmark("_timing")
    order = []
    clock = iter(range(1000))
    # Each timing reads the clock twice; a fake clock advancing 1 s per read makes every timing 1 s.
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(clock)))
    ms = timing.interleaved_median_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                                      repeats=3, warmup=2, inner=4)
    assert order == (["a"] * 4 + ["b"] * 4) * 5  # 2 warm-up and 3 timed rounds, interleaved
    assert ms == {"a": 250.0, "b": 250.0}  # 1 s over 4 calls
