#!/usr/bin/env bash
# Regenerate requirements.lock, the pinned environment tools/setup.sh installs, from
# pyproject.toml (dependencies + the dev and slurm extras), with the hash of every file.
# Run it after changing dependencies in pyproject.toml; tests/test_lock.py fails until then.
#
# The lock is for CPython 3.11 on Linux x86_64 (this project's machines). torch is not in
# it: CPU and CUDA builds are different files with different dependencies, and GPU machines
# bring their own torch. tools/setup.sh installs torch from pyproject's range instead. The
# lock is resolved against the CPU build of torch, so it holds torch's own dependencies
# (sympy, networkx, ...) but none of the CUDA packages.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${OVERDEQ_VENV:-$root/.venv}
uv_version=0.13.9
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$uv_version"
# the CPU build of torch to resolve against: a local wheel folder (pip's find-links), or
# PyPI's metadata for the same release when there is none
torch_cpu=${OVERDEQ_LOCK_TORCH:-torch==2.13.0+cpu}
links=()
for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do [ -d "$dir" ] && links+=(--find-links "$dir"); done
# Constraints of the lock itself, each with its reason:
# - jsonschema < 4.25: its format-nongpl extra (pulled in by jupyterlab's jupyter-events)
#   gained rfc3987-syntax in 4.25, whose import builds a grammar: ~3 s of CPU on every
#   Snakemake start, which imports jsonschema. 4.24 validates the same schemas.
{ echo "$torch_cpu"; echo "jsonschema<4.25"; } > "$tool/constraints.txt"
"$tool/venv/bin/uv" pip compile pyproject.toml --extra dev --extra slurm \
  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
  --generate-hashes --no-emit-package torch -c "$tool/constraints.txt" "${links[@]}" \
  --custom-compile-command "tools/lock.sh" -o requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages (torch excluded)"
