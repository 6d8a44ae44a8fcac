#!/usr/bin/env bash
# The GPU measurement, for a lent H100/H200 whose image has torch and transformers but no vLLM and
# no weights (benchmarks/gpu_bench.py writes random models of real shapes). Under 8 minutes. With two
# GPUs visible, section E puts the teachers on one and the meta-prover on the other.
#   bash benchmarks/gpu.sh            # prints, and writes $OUT/gpu.txt when $OUT is set
#   bash benchmarks/gpu.sh --shapes 1.5B --rows-in-flight 64   # + P1 with search.rows_in_flight, and search.speculative
# Commit the output as benchmarks/results/gpu-<date>-<card>.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # run from the checkout; nothing to install
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'PY'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.version.cuda}")
PY
timeout 480 python benchmarks/gpu_bench.py "$@" 2>&1 | tee "${OUT:-/tmp}/gpu.txt"
