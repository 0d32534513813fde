# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/bench_likelihood.py at smoke size: both likelihoods are timed in both states of the logits."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_likelihood.py"


def test_both_likelihoods_are_timed(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # the benchmarks' shared _timing module
    spec = importlib.util.spec_from_file_location("bench_likelihood", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(bench.make_parser().parse_args(["--batch-sizes", "2", "--repeats", "1", "--warmup", "0",
                                                         "--inner", "1"]))
    assert sorted(results) == [(2, "confident"), (2, "moderate")]
    assert all(sorted(ms) == ["LogitBernoulli", "dist.Bernoulli"] and min(ms.values()) > 0
               for ms in results.values())
    assert "LogitBernoulli" in capsys.readouterr().out
