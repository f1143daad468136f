#!/usr/bin/env bash
# One GPU check (issue 11), in under 8 minutes on one GPU, without Snakemake: epoch times at
# n=1000, m=19000 (fp32, tf32, mixed, mixed with gradient_error 0.1, the released algorithm
# in fp32 and tf32 with their losses compared), one short paper-tier training job, and
# overdeq.plan's prediction of each; the table comes last, and goes to
# $OUT/gpu_check.txt (or benchmarks/gpu_check.out). See benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                        # on the GPU machine
#   GPU_CHECK_SCALE=small bash benchmarks/gpu_check.sh  # seconds, on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_CHECK_TIMEOUT:-470}" "${PYTHON:-python}" benchmarks/gpu_check.py
