#!/usr/bin/env bash
# Compile a LaTeX document with latexmk into a build folder and copy the PDF to its target.
# Reproducible bytes: fixed SOURCE_DATE_EPOCH, no PDF ID/dates (set in the preamble too).
# On a LaTeX error the relevant lines of the log are printed to stderr and the exit status
# is non-zero, so the Snakemake rule fails and shows them.
#   tools/latex.sh paper/main.tex paper/main.pdf logs/paper.log
set -uo pipefail
tex=$1; pdf=$2; log=${3:-/dev/null}
dir=$(dirname "$tex"); name=$(basename "$tex" .tex)
build="$dir/build"
mkdir -p "$build" "$(dirname "$log")"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1672531200} FORCE_SOURCE_DATE=1
if ! command -v latexmk >/dev/null; then
  echo "latex.sh: latexmk not found; run tools/setup.sh (installs TeX Live on Debian as root)" >&2
  exit 1
fi
(cd "$dir" && latexmk -pdf -interaction=nonstopmode -halt-on-error -file-line-error \
   -outdir=build "$name.tex") >"$log" 2>&1
status=$?
if [ $status -ne 0 ] || [ ! -f "$build/$name.pdf" ]; then
  echo "latex.sh: LaTeX failed on $tex (full log: $log, $build/$name.log). Relevant lines:" >&2
  grep -E -A4 '^(!|.*:[0-9]+: )|Undefined control sequence|LaTeX Error|Missing .* inserted|File .* not found' \
    "$build/$name.log" 2>/dev/null | head -40 >&2
  if grep -q "File \`.*' not found" "$build/$name.log" 2>/dev/null; then
    echo "latex.sh: a TeX file is missing; tools/tex-probe.sh names its Debian package" >&2
  fi
  # latexmk's database lists only the files the failed run found: once the cause is fixed
  # (a package installed, say) it would answer "Nothing to do" with the old error. Without
  # the database the next run starts afresh.
  rm -f "$build/$name.fdb_latexmk"
  exit 1
fi
if grep -qE 'LaTeX Warning: (Reference|Citation) .* undefined' "$build/$name.log"; then
  echo "latex.sh: undefined references or citations in $tex:" >&2
  grep -E 'LaTeX Warning: (Reference|Citation) .* undefined' "$build/$name.log" | sort -u >&2
  rm -f "$build/$name.fdb_latexmk"
  exit 1
fi
cp "$build/$name.pdf" "$pdf.tmp" && mv "$pdf.tmp" "$pdf"
