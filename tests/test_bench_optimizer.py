# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/bench_optimizer.py at smoke size: both optimisers are timed on both networks."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_optimizer.py"


def test_both_optimizers_are_timed(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # the benchmarks' shared _timing module
    spec = importlib.util.spec_from_file_location("bench_optimizer", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(bench.make_parser().parse_args(["--repeats", "1", "--warmup", "0", "--inner", "1"]))
    assert sorted(results) == ["conv", "mlp"]
    assert all(sorted(ms) == ["GroupedOptim", "PyroOptim"] and min(ms.values()) > 0 for ms in results.values())
    assert "GroupedOptim" in capsys.readouterr().out
