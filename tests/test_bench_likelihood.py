# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/bench_likelihood.py at smoke size: both likelihoods are timed in both states of the logits."""


def test_both_likelihoods_are_timed(capsys, load_benchmark):
    bench = load_benchmark("bench_likelihood")
    results = bench.main(bench.make_parser().parse_args(["--batch-sizes", "2", "--repeats", "1", "--warmup", "0",
                                                         "--inner", "1"]))
    assert sorted(results) == [(2, "confident"), (2, "moderate")]
    assert all(sorted(ms) == ["LogitBernoulli", "dist.Bernoulli"] and min(ms.values()) > 0
               for ms in results.values())
    assert "LogitBernoulli" in capsys.readouterr().out
