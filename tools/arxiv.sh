#!/usr/bin/env bash
# Build an arXiv source bundle of the paper and prove that it compiles on its own.
#   tools/arxiv.sh paper dist/overdeq-arxiv.tar.gz logs/arxiv.log
# The bundle holds main.tex, sections/, generated/ (macros and tables), the figures the paper
# includes (under figures/) and main.bbl in place of the .bib: arXiv runs pdflatex, not
# bibtex. It is then unpacked in an empty directory and compiled twice with pdflatex; any
# error, missing file or undefined reference fails the build.
set -euo pipefail
paper=$1; out=$2; log=${3:-/dev/null}
build="$paper/build"
[ -f "$build/main.bbl" ] || { echo "arxiv.sh: $build/main.bbl missing: build paper/main.pdf first" >&2; exit 1; }
stage=$(mktemp -d); check=$(mktemp -d)
trap 'rm -rf "$stage" "$check"' EXIT
mkdir -p "$stage/sections" "$stage/generated" "$stage/figures" "$(dirname "$out")" "$(dirname "$log")"
cp "$paper/main.tex" "$build/main.bbl" "$stage/"
cp "$paper"/sections/*.tex "$stage/sections/"
cp "$paper"/generated/*.tex "$stage/generated/"
# the figures the paper includes, found in its graphics path
grep -ho '\\includegraphics\(\[[^]]*\]\)\?{[^}]*}' "$paper/main.tex" "$paper"/sections/*.tex \
  | sed 's/.*{\(.*\)}/\1/' | sort -u | while read -r fig; do
    cp "figures/$fig" "$stage/figures/$fig"
  done
# reproducible tarball: sorted names, fixed owner and mtime
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2023-01-01 00:00:00' \
    -C "$stage" -czf "$out.tmp" . && mv "$out.tmp" "$out"
tar -C "$check" -xzf "$out"
(cd "$check" && for pass in 1 2; do
   pdflatex -interaction=nonstopmode -halt-on-error main.tex >"pass$pass.log" 2>&1 || {
     echo "arxiv.sh: the bundle does not compile (pdflatex pass $pass):" >&2
     grep -A4 '^!' "pass$pass.log" | head -20 >&2; exit 1; }
 done
 if grep -q 'undefined' main.log; then
   echo "arxiv.sh: undefined references in the bundle:" >&2; grep 'undefined' main.log >&2; exit 1
 fi
 [ -s main.pdf ]) 
{ echo "arXiv bundle $out: $(tar -tzf "$out" | wc -l) files, compiles in a clean directory"; tar -tzf "$out"; } >"$log"
cat "$log" | head -1
