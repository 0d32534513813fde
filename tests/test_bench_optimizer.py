# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/bench_optimizer.py at smoke size: both optimisers are timed on both networks."""


def test_both_optimizers_are_timed(capsys, load_benchmark):
    bench = load_benchmark("bench_optimizer")
    results = bench.main(bench.make_parser().parse_args(["--repeats", "1", "--warmup", "0", "--inner", "1"]))
    assert sorted(results) == ["conv", "mlp"]
    assert all(sorted(ms) == ["GroupedOptim", "PyroOptim"] and min(ms.values()) > 0 for ms in results.values())
    assert "GroupedOptim" in capsys.readouterr().out
