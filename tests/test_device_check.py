# Copyright Contributors to the pyro_hfvae project.
# SPDX-License-Identifier: Apache-2.0
"""benchmarks/device_check.sh in its CPU smoke mode: every section runs and lands in the one results file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
SECTIONS = ["install", "environment", "tests", "bench_tiny", "bench_mlp"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so_and_stops(tmp_path):
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout and "--allow-cpu" in result.stdout
    assert not (tmp_path / "out" / "device_check.json").exists()


def test_unknown_argument_is_an_error(tmp_path):
    result = run_script(tmp_path, "--fast")
    assert result.returncode == 2 and "unknown argument '--fast'" in result.stderr


@pytest.mark.slow  # about 50 s on two shared cores: five Python processes, each importing torch and pyro
@pytest.mark.skipif(torch.cuda.is_available(), reason="the smoke mode is the CPU stand-in")
def test_cpu_smoke_run_writes_every_section(tmp_path):
    # The smallest test selection keeps this fast; the sections are the GPU run's.
    result = run_script(tmp_path, "--allow-cpu",
                        DEVICE_CHECK_PYTEST="tests/datasets/test_cuda.py -k random_batches")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert report["device"] == "cpu" and report["all_passed"] is True
    assert list(report["sections"]) == SECTIONS
    assert all(report["sections"][name]["status"] == "passed" for name in SECTIONS)
    tests = report["sections"]["tests"]
    assert (tests["passed"], tests["failures"], tests["errors"], tests["skipped"]) == (1, 0, 0, 1)
    assert any("needs a CUDA device" in line for line in tests["log_tail"])  # -rs shows the skip reason
    for net, batches in (("tiny", [16, 32]), ("mlp", [16])):
        results = report["sections"][f"bench_{net}"]["results"]
        assert results["net"] == net and [row["batch"] for row in results["results"]] == batches
        assert all(row["ms"]["hfvae_loss"] > 0 and row["ms"]["trace_elbo"] > 0 for row in results["results"])
    assert "=== summary" in result.stdout and "all passed" in result.stdout
