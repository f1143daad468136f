#!/usr/bin/env bash
# Set up what overdeq needs, idempotently: a virtual environment (.venv) with the package and
# the pinned versions of its Python dependencies (requirements.lock), TeX Live + latexmk
# for the paper, and (--test) headless Chromium for the tests of the HTML report. A second
# run that finds everything in place returns in about a second.
#
#   tools/setup.sh            environment + TeX
#   tools/setup.sh --no-tex   environment only
#   tools/setup.sh --test     environment + TeX + Chromium (what ./run-tests runs)
#
# Environment variables: PYTHON (interpreter to build the venv from, default python3; the
# lock is for Python 3.11), OVERDEQ_VENV (default .venv), OVERDEQ_TORCH_INDEX (a pip index
# with CPU builds of torch, default PyTorch's), OVERDEQ_UNLOCKED=1 (install the newest
# versions pyproject.toml allows instead of the lock: for other Pythons or platforms).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${OVERDEQ_VENV:-$root/.venv}
python=${PYTHON:-python3}
lock=requirements.lock
unlocked=${OVERDEQ_UNLOCKED:-0}
torch_index=${OVERDEQ_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
want_tex=1
want_browser=0
for arg in "$@"; do
  case "$arg" in
    --no-tex) want_tex=0 ;;
    --test) want_browser=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --no-tex, --test)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Python environment ------------------------------------------------------------------
# 1. the lock (every package but torch, pinned with hashes), 2. torch within pyproject's
# range (a CPU build when there is no GPU), 3. overdeq itself, editable, 4. `pip check`.
stamp="$venv/.overdeq-setup"
fingerprint=$(cat pyproject.toml "$lock" tools/setup.sh | sha256sum | cut -c1-16)-unlocked$unlocked
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && "$venv/bin/python" -c "import overdeq, torch" 2>/dev/null; then
  say "python environment up to date ($venv)"
else
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "error: need Python >= 3.11 as '$python' (set PYTHON=/path/to/python3.11)"; exit 1
  fi
  if [ "$unlocked" != 1 ] && ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    say "error: $lock pins versions for Python 3.11, and '$python' is $("$python" -V 2>&1)."
    say "       Set PYTHON=/path/to/python3.11, or OVERDEQ_UNLOCKED=1 to install unpinned versions."
    exit 1
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating virtual environment $venv"
    "$python" -m venv "$venv" || {
      say "error: '$python -m venv' failed; on Debian install it with: apt-get install python3-venv"; exit 1; }
  fi
  pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  if [ "$unlocked" != 1 ]; then
    say "installing the pinned dependencies of $lock"
    "${pip[@]}" install -q --require-hashes --no-deps -r "$lock"
  fi
  torch_spec=$("$venv/bin/python" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(d for d in deps if re.match(r"torch\b", d)).replace(" ", ""))
PY
)
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      say "GPU found: installing $torch_spec from PyPI (CUDA build)"
      "${pip[@]}" install "$torch_spec"
    else
      # No GPU: a CPU build of torch is a few hundred MB instead of several GB of CUDA wheels.
      # First a CPU wheel already on this machine (pip's find-links: wheelhouses, mirrors),
      # then PyTorch's CPU index, then whatever PyPI serves.
      say "no GPU: installing a CPU build of $torch_spec"
      "${pip[@]}" install -q --no-index --only-binary=:all: "$torch_spec" 2>/dev/null \
        || PIP_EXTRA_INDEX_URL="" "${pip[@]}" install -q --index-url "$torch_index" \
             --timeout 30 --retries 1 "$torch_spec" \
        || { say "CPU index unreachable; installing torch from the default index"; \
             "${pip[@]}" install "$torch_spec"; }
    fi
  fi
  if [ "$unlocked" = 1 ]; then
    say "installing overdeq[dev,slurm] (editable) with unpinned dependencies"
    "${pip[@]}" install -q -e ".[dev,slurm]"
  else
    say "installing overdeq (editable)"
    # the build backend (setuptools) is pinned in the lock too: no isolated build env
    "${pip[@]}" install -q --no-deps --no-build-isolation -e .
  fi
  "${pip[@]}" check >&2 || { say "error: the environment is inconsistent (pip check, above)"; exit 1; }
  "$venv/bin/python" -c "import overdeq, torch, snakemake; print('[setup] torch', torch.__version__)" >&2
  echo "$fingerprint" > "$stamp"
fi

# --- TeX ---------------------------------------------------------------------------------
# What the paper needs is listed, with the Debian package of each file, in
# tools/tex-requirements.txt; tools/tex-probe.sh checks every file and compiles the paper's
# preamble. A stamp records a passing probe for this table, preamble and set of installed
# package versions, so the second run costs a dpkg query instead of a LaTeX run.
# Debian packages, only as root: what both system sections below install with
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {  # packages, without Recommends (lmodern is a Recommends: it is listed itself)
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
tex_packages=$(awk '!/^#/ && NF == 2 {print $2}' tools/tex-requirements.txt | sort -u | tr '\n' ' ')
tex_stamp="$venv/.overdeq-tex"
tex_fingerprint() {
  { cat tools/tex-requirements.txt tools/tex-probe.sh; sed -n '1,/\\begin{document}/p' paper/main.tex
    # shellcheck disable=SC2086
    dpkg-query -W -f '${Package} ${Version}\n' $tex_packages 2>/dev/null; } | sha256sum | cut -c1-16
}
if [ "$want_tex" = 1 ]; then
  if [ -f "$tex_stamp" ] && [ "$(cat "$tex_stamp")" = "$(tex_fingerprint)" ]; then
    say "TeX Live + latexmk present (the paper's preamble compiled)"
  elif tools/tex-probe.sh 2>/dev/null; then
    say "TeX Live + latexmk present (the paper's preamble compiles)"
    tex_fingerprint > "$tex_stamp"
  elif can_apt; then
    say "installing TeX Live + latexmk from Debian packages (about a minute): $tex_packages"
    # shellcheck disable=SC2086
    apt_install $tex_packages
    if ! tools/tex-probe.sh; then
      say "error: TeX packages were installed but the paper's preamble still does not build"
      say "       (above: what is missing); add its package to tools/tex-requirements.txt"
      exit 1
    fi
    say "TeX checked: the paper's preamble compiles"
    tex_fingerprint > "$tex_stamp"
  else
    tools/tex-probe.sh || true
    say "error: TeX Live is missing or incomplete (above: what is missing), and this script"
    say "       installs it only as root on Debian. Install the packages yourself:"
    say "       sudo apt-get install --no-install-recommends $tex_packages"
    say "       (or run tools/setup.sh --no-tex to set up Python only; the paper then fails)"
    exit 1
  fi
fi

# --- Chromium (--test) -------------------------------------------------------------------
# The report tests (tests/test_report.py, and the tiny-tier workflow test) open the HTML
# report in headless Chromium. A stamp records a working headless start for the installed
# package version, so the second run costs a dpkg query.
browser_package=chromium
browser_stamp="$venv/.overdeq-chromium"
browser_fingerprint() {
  { dpkg-query -W -f '${Package} ${Version}\n' "$browser_package" 2>/dev/null; cat tools/setup.sh; } \
    | sha256sum | cut -c1-16
}
browser_works() {  # a headless start that renders a page (no network, no display)
  local profile out
  profile=$(mktemp -d)
  out=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
          --user-data-dir="$profile" --dump-dom 'data:text/html,<p>overdeq-ok</p>' 2>/dev/null) || true
  rm -rf "$profile"
  case "$out" in *overdeq-ok*) return 0 ;; *) return 1 ;; esac
}
if [ "$want_browser" = 1 ]; then
  if [ -f "$browser_stamp" ] && [ "$(cat "$browser_stamp")" = "$(browser_fingerprint)" ]; then
    say "Chromium present (headless start checked)"
  elif command -v chromium >/dev/null 2>&1 && browser_works; then
    say "Chromium present (headless start works)"
    browser_fingerprint > "$browser_stamp"
  elif can_apt; then
    say "installing Chromium from Debian packages (about a minute, ~400 MB): $browser_package"
    apt_install "$browser_package"
    if ! browser_works; then
      say "error: $browser_package was installed but 'chromium --headless' does not render a page"
      exit 1
    fi
    say "Chromium checked: headless start works"
    browser_fingerprint > "$browser_stamp"
  else
    say "error: the report tests need headless Chromium, which is missing, and this script"
    say "       installs it only as root on Debian. Install it yourself:"
    say "       sudo apt-get install --no-install-recommends $browser_package"
    say "       (or run pytest without ./run-tests: the browser tests are then skipped)"
    exit 1
  fi
fi
