#!/usr/bin/env bash
# Set up what overdeq needs, idempotently: a virtual environment (.venv) with the package and
# its Python dependencies, and TeX Live + latexmk for the paper. A second run that finds
# everything in place returns in seconds.
#
#   tools/setup.sh            environment + TeX
#   tools/setup.sh --no-tex   environment only
#
# Environment variables: PYTHON (interpreter to build the venv from, default python3),
# OVERDEQ_VENV (default .venv), OVERDEQ_TORCH_INDEX (a pip index with CPU builds of torch,
# default PyTorch's), OVERDEQ_EXTRAS (pip extras, default "dev,slurm").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${OVERDEQ_VENV:-$root/.venv}
python=${PYTHON:-python3}
extras=${OVERDEQ_EXTRAS:-dev,slurm}
torch_index=${OVERDEQ_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
want_tex=1
for arg in "$@"; do
  case "$arg" in
    --no-tex) want_tex=0 ;;
    *) echo "setup.sh: unknown option $arg (known: --no-tex)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Python environment ------------------------------------------------------------------
stamp="$venv/.overdeq-setup"
fingerprint=$(cat pyproject.toml tools/setup.sh | sha256sum | cut -c1-16)-$extras
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && "$venv/bin/python" -c "import overdeq, torch" 2>/dev/null; then
  say "python environment up to date ($venv)"
else
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    say "error: need Python >= 3.10 as '$python' (set PYTHON=/path/to/python3.11)"; exit 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating virtual environment $venv"
    "$python" -m venv "$venv" || {
      say "error: '$python -m venv' failed; on Debian install it with: apt-get install python3-venv"; exit 1; }
  fi
  pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      say "GPU found: installing torch from PyPI (CUDA build)"
      "${pip[@]}" install "torch>=2.4"
    else
      # No GPU: a CPU build of torch is a few hundred MB instead of several GB of CUDA wheels.
      # First a CPU wheel already on this machine (pip's find-links: wheelhouses, mirrors),
      # then PyTorch's CPU index, then whatever PyPI serves.
      say "no GPU: installing a CPU build of torch"
      "${pip[@]}" install --no-index --only-binary=:all: "torch>=2.4" 2>/dev/null \
        || PIP_EXTRA_INDEX_URL="" "${pip[@]}" install --index-url "$torch_index" \
             --timeout 30 --retries 1 "torch>=2.4" \
        || { say "CPU index unreachable; installing torch from the default index"; \
             "${pip[@]}" install "torch>=2.4"; }
    fi
  fi
  say "installing overdeq[$extras] (editable) and its dependencies"
  "${pip[@]}" install -q -e ".[$extras]"
  "$venv/bin/python" -c "import overdeq, torch, snakemake; print('[setup] torch', torch.__version__)" >&2
  echo "$fingerprint" > "$stamp"
fi

# --- TeX ---------------------------------------------------------------------------------
tex_ok() {
  command -v latexmk >/dev/null 2>&1 && command -v pdflatex >/dev/null 2>&1 \
    && kpsewhich booktabs.sty siunitx.sty amsthm.sty natbib.sty >/dev/null 2>&1 \
    && [ "$(kpsewhich booktabs.sty siunitx.sty amsthm.sty natbib.sty | wc -l)" -eq 4 ]
}
tex_packages="latexmk texlive-latex-extra texlive-fonts-recommended texlive-science"
if [ "$want_tex" = 1 ]; then
  if tex_ok; then
    say "TeX Live + latexmk present"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing TeX Live + latexmk from Debian packages (about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $tex_packages >/dev/null
    tex_ok || { say "error: TeX packages installed but latexmk/pdflatex still missing"; exit 1; }
  else
    say "error: TeX Live and latexmk are missing, and this script can only install them as root"
    say "       on Debian. Install them yourself, e.g.:"
    say "       sudo apt-get install $tex_packages"
    exit 1
  fi
fi
