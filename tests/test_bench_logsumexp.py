# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/bench_logsumexp.py at smoke size: both reductions are timed on both states of the tables."""

import torch


def test_both_reductions_are_timed(capsys, load_benchmark):
    bench = load_benchmark("bench_logsumexp")
    results = bench.main(bench.make_parser().parse_args(["--batch-sizes", "8", "--repeats", "1", "--warmup", "0",
                                                         "--inner", "1"]))
    assert sorted(results) == [(8, "fresh"), (8, "trained")]
    assert all(sorted(ms) == ["safe_logsumexp", "torch.logsumexp"] and min(ms.values()) > 0
               for ms in results.values())
    assert "safe_logsumexp" in capsys.readouterr().out


def test_trained_tables_underflow_and_fresh_ones_do_not(load_benchmark):
    bench = load_benchmark("bench_logsumexp")
    generator = torch.Generator().manual_seed(0)
    fresh = bench.normal_table(64, 10, "fresh", generator).detach()
    trained = bench.normal_table(64, 10, "trained", generator).detach()
    below = [((t - t.amax(1, keepdim=True)) < -87).float().mean().item() for t in (fresh, trained)]
    assert below[0] == 0 and below[1] > 0.5
