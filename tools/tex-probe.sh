#!/usr/bin/env bash
# Check that TeX can build the paper: every program and file of tools/tex-requirements.txt
# is found, and the paper's preamble compiles (a one-line document with paper/main.tex's
# preamble). Prints nothing and exits 0 when all is well; otherwise names what is missing,
# the Debian package that provides it, and exits 1.
#   tools/tex-probe.sh            (from anywhere in the repository)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
table="$root/tools/tex-requirements.txt"
say() { printf '[tex-probe] %s\n' "$*" >&2; }
package_of() {  # the Debian package of a file or program, from the table
  awk -v f="$1" '!/^#/ && NF == 2 && $1 == f {print $2}' "$table"
}

missing=()
while read -r item pkg; do
  case "$item" in ''|\#*) continue ;; esac
  if [[ "$item" == *.* ]]; then
    kpsewhich "$item" >/dev/null 2>&1 || missing+=("$item:$pkg")
  else
    command -v "$item" >/dev/null 2>&1 || missing+=("$item:$pkg")
  fi
done < "$table"
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | cut -d: -f2 | sort -u | tr '\n' ' ')
  say "missing: $(printf '%s\n' "${missing[@]}" | cut -d: -f1 | tr '\n' ' ')"
  say "Debian packages that provide them: $pkgs"
  say "install them with: apt-get install --no-install-recommends $pkgs"
  exit 1
fi

# The preamble of the paper, without its \input of generated files, around one word.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -n '1,/\\begin{document}/p' "$root/paper/main.tex" | grep -v '\\input{' > "$work/probe.tex"
printf 'probe\n\\end{document}\n' >> "$work/probe.tex"
if ! (cd "$work" && pdflatex -interaction=nonstopmode -halt-on-error probe.tex >/dev/null 2>&1); then
  file=$(grep -o "File \`[^']*' not found" "$work/probe.log" | head -1 | sed "s/File \`\(.*\)' not found/\1/")
  if [ -n "$file" ]; then
    pkg=$(package_of "$file")
    if [ -n "$pkg" ]; then
      say "the paper's preamble does not compile: $file is missing; it is in Debian package $pkg"
      say "install it with: apt-get install --no-install-recommends $pkg"
    else
      say "the paper's preamble does not compile: $file is missing, and tools/tex-requirements.txt"
      say "does not say which Debian package has it: 'apt-file search $file' tells; add it there"
    fi
  else
    say "the paper's preamble does not compile with pdflatex; the first error:"
    grep -m1 -A3 '^!' "$work/probe.log" >&2
  fi
  exit 1
fi
[ -s "$work/probe.pdf" ] || { say "pdflatex wrote no PDF for the preamble probe"; exit 1; }
