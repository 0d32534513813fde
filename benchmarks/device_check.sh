#!/usr/bin/env bash
# One prepared check of pyro_hfvae on a CUDA machine (well under 8 minutes on one GPU):
#   1. environment: nvidia-smi, python, torch, pyro (installs the package with its test extras if missing,
#      never torch itself);
#   2. the CUDA tests of every capability: python -m pytest -q -m cuda -rs (junit XML + log);
#   3. the step benchmark (benchmarks/bench_step.py) on the tiny and the MLP networks.
# All figures go into ONE results file, $OUT/device_check.json (OUT defaults to ./device_check_out).
# Each section runs under `timeout`; a failing section is recorded and the script goes on; the
# summary at the end lists every section's status. Exit status: 0 when every section passed.
#
#   bash benchmarks/device_check.sh               # on a CUDA machine
#   bash benchmarks/device_check.sh --allow-cpu   # smoke test: same steps on the CPU, tiny sizes
#   (or DEVICE_CHECK_ALLOW_CPU=1)
# Without a CUDA device and without --allow-cpu it says so and exits 0 at once.
set -euo pipefail

ALLOW_CPU="${DEVICE_CHECK_ALLOW_CPU:-0}"
for arg in "$@"; do
  case "$arg" in
    --allow-cpu) ALLOW_CPU=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument '$arg' (expected --allow-cpu or --help)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/device_check_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SECTIONS_FILE="$OUT/sections.tsv"
: > "$SECTIONS_FILE"

# run_section NAME TIMEOUT_S CMD...: runs CMD under timeout, logging to $OUT/NAME.log, records its status.
run_section() {
  local name="$1" limit="$2"; shift 2
  local start end rc=0
  start=$(date +%s)
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1 || rc=$?
  end=$(date +%s)
  local status=passed
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status=timed_out; elif [ "$rc" -ne 0 ]; then status=failed; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((end - start))" >> "$SECTIONS_FILE"
  echo "=== $name: $status (exit $rc, $((end - start)) s)"
  return 0
}

if ! command -v "$PYTHON" > /dev/null; then
  echo "device_check.sh: no '$PYTHON' on PATH; set PYTHON=/path/to/python" >&2; exit 2
fi
if ! "$PYTHON" -c "import torch" 2> /dev/null; then
  echo "device_check.sh: torch is not importable by $PYTHON; install a CUDA build of torch first (this script never installs torch)" >&2
  exit 2
fi
HAS_CUDA=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$HAS_CUDA" = "1" ]; then
  DEVICE=cuda
  TINY_BATCHES=(256 1024 4096 16384); MLP_BATCHES=(1024 4096 16384); REPEATS=10
  PYTEST_SELECT=(-m cuda)
  TEST_LIMIT=300; BENCH_LIMIT=150
  BENCH_METHODS=()  # all of bench_step.py's methods (pythae where installed)
elif [ "$ALLOW_CPU" = "1" ]; then
  echo "device_check.sh: no CUDA device; --allow-cpu: running the same steps on the CPU with tiny sizes"
  DEVICE=cpu
  TINY_BATCHES=(16 32); MLP_BATCHES=(16); REPEATS=1
  # The cuda tests skip here; their CPU halves (the CPU-against-CPU comparisons) run instead.
  # DEVICE_CHECK_PYTEST (space-separated pytest arguments) narrows them further.
  read -r -a PYTEST_SELECT <<< "${DEVICE_CHECK_PYTEST:--k cpu tests/infer/test_cuda.py tests/datasets/test_cuda.py}"
  TEST_LIMIT=120; BENCH_LIMIT=60
  BENCH_METHODS=(--methods trace_elbo hfvae_loss)
else
  echo "device_check.sh: no CUDA device (torch.cuda.is_available() is False); nothing to check here. Run it on a CUDA machine, or pass --allow-cpu for a CPU smoke run."
  exit 0
fi

# 1. environment (and install the package with its test extras where it is missing)
run_section install 240 bash -c "
  if $PYTHON -c 'import pyro_hfvae, pyro, pytest, sklearn, scipy, h5py, hypothesis' 2> /dev/null; then
    echo 'pyro_hfvae and its test extras are importable: nothing to install'
  else
    $PYTHON -m pip install -e '.[test]'
  fi"
run_section environment 60 bash -c "
  (command -v nvidia-smi > /dev/null && nvidia-smi) || echo 'nvidia-smi: not found'
  $PYTHON - <<'PY'
import platform, torch
try:
    import pyro
    pyro_version = pyro.__version__
except ImportError:
    pyro_version = None
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'cudnn', torch.backends.cudnn.version(), 'pyro', pyro_version)
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), 'count', torch.cuda.device_count())
PY"

# 2. the CUDA tests of every capability
run_section tests "$TEST_LIMIT" "$PYTHON" -m pytest -q -rs -p no:cacheprovider "${PYTEST_SELECT[@]}" \
  --junitxml="$OUT/tests.xml"

# 3. the step benchmark
run_section bench_tiny "$BENCH_LIMIT" "$PYTHON" benchmarks/bench_step.py --device "$DEVICE" --net tiny \
  --batch-sizes "${TINY_BATCHES[@]}" --repeats "$REPEATS" "${BENCH_METHODS[@]}" --json "$OUT/bench_tiny.json"
run_section bench_mlp "$BENCH_LIMIT" "$PYTHON" benchmarks/bench_step.py --device "$DEVICE" --net mlp \
  --batch-sizes "${MLP_BATCHES[@]}" --repeats "$REPEATS" "${BENCH_METHODS[@]}" --json "$OUT/bench_mlp.json"

# One results file with every section and its figures.
"$PYTHON" - "$OUT" "$DEVICE" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

out, device = Path(sys.argv[1]), sys.argv[2]
sections = {}
for line in (out / "sections.tsv").read_text().splitlines():
    name, status, rc, seconds = line.split("\t")
    log = out / f"{name}.log"
    tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
    sections[name] = {"status": status, "exit_code": int(rc), "seconds": int(seconds), "log_tail": tail}
junit = out / "tests.xml"
if junit.exists():
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    sections["tests"].update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                             failed_tests=failed)
for net in ("tiny", "mlp"):
    path = out / f"bench_{net}.json"
    if path.exists():
        sections[f"bench_{net}"]["results"] = json.loads(path.read_text())
env = sections.get("environment", {}).get("log_tail", [])
result = {"device": device, "all_passed": all(s["status"] == "passed" for s in sections.values()),
          "sections": sections}
(out / "device_check.json").write_text(json.dumps(result, indent=1))
print("\n=== summary (" + str(out / "device_check.json") + ")")
for name, section in sections.items():
    extra = ""
    if name == "tests" and "tests" in section:
        extra = f"  {section['passed']} passed, {section['failures'] + section['errors']} failed, {section['skipped']} skipped"
    if "results" in section:
        extra = "  ms/step: " + "; ".join(
            f"B={row['batch']}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["ms"].items())
            for row in section["results"]["results"])
    print(f"{name:12s} {section['status']:10s} {section['seconds']:4d} s{extra}")
print("all passed" if result["all_passed"] else "SOME SECTIONS FAILED")
PY

awk -F '\t' '$2 != "passed" { bad = 1 } END { exit bad }' "$SECTIONS_FILE"
