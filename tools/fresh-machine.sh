#!/usr/bin/env bash
# Prove that the README's two commands work on a fresh Debian machine: build a throwaway
# Debian 12 (bookworm) root file system with debootstrap (Python 3.11, git, nothing else: no
# TeX, no virtual environment), clone this repository's HEAD into it, and run
#   ./reproduce, ./reproduce again, ./run-tests, ./run-tests again
# inside it with chroot, timing each. Root only (debootstrap, mount, chroot), on Debian or
# Ubuntu with debootstrap installed. docs/fresh-machine.md records a run and its output.
#
#   tools/fresh-machine.sh [WORKDIR]      default WORKDIR: /tmp/overdeq-fresh
#
# Environment: FRESH_BASE (a debootstrapped folder to copy instead of debootstrapping anew),
# FRESH_MIRROR (default http://deb.debian.org/debian), FRESH_WHEELS (a folder of wheels to
# offer pip inside the chroot, as pip's find-links; default /opt/wheels if it exists: the
# development machines keep the CPU build of torch there), FRESH_STEPS (default
# "reproduce reproduce run-tests run-tests").
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "fresh-machine.sh: needs root (debootstrap, mount, chroot)" >&2; exit 1; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-/tmp/overdeq-fresh}
root="$work/rootfs"
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
wheels=${FRESH_WHEELS:-/opt/wheels}
steps=${FRESH_STEPS:-reproduce reproduce run-tests run-tests}
say() { printf '[fresh] %s\n' "$*" >&2; }

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mounted+=("$2"); }

rm -rf "$work"
mkdir -p "$work"
if [ -n "${FRESH_BASE:-}" ]; then
  say "copying the base system $FRESH_BASE"
  cp -a "$FRESH_BASE" "$root"
else
  say "debootstrap bookworm (minbase + python3, python3-venv, git, ca-certificates)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,git,ca-certificates,procps \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1
fi
# what the new system must not have: the point of the exercise
if chroot "$root" sh -c 'command -v latexmk || command -v pdflatex || ls /usr/share/texlive' >/dev/null 2>&1; then
  say "error: the base system already has TeX"; exit 1
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# the host's extra certificate authorities (a proxy's, say): the network is the host's
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
mount -t proc proc "$root/proc"; mounted+=("$root/proc")
# recursively, so /sys/fs/cgroup comes along (slurmd's cgroup plugin needs it)
mkdir -p "$root/sys"; mount --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"
mounted+=("$root/sys")
bind /dev "$root/dev"
bind /dev/pts "$root/dev/pts"
[ -d /dev/shm ] && bind /dev/shm "$root/dev/shm"
pip_env=""
if [ -d "$wheels" ]; then
  bind "$wheels" "$root/opt/wheels"
  pip_env="PIP_FIND_LINKS=/opt/wheels"
fi
git clone -q "$repo" "$root/root/overdeq"
commit=$(git -C "$root/root/overdeq" rev-parse --short HEAD)
say "clone of $commit in $root/root/overdeq; python: $(chroot "$root" python3 -V 2>&1)"

summary="$work/summary.txt"
printf '%-10s %8s %4s\n' step seconds rc > "$summary"
n=0
for step in $steps; do
  n=$((n + 1))
  log="$work/$n-$step.log"
  say "step $n: ./$step (log $log)"
  start=$(date +%s)
  set +e
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 $pip_env bash -c "cd /root/overdeq && ./$step" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  printf '%-10s %8d %4d\n' "$step" "$secs" "$rc" >> "$summary"
  tail -3 "$log" | sed 's/^/    /' >&2
  [ "$rc" = 0 ] || { say "step $n (./$step) failed with status $rc"; break; }
done
say "summary (commit $commit):"
cat "$summary" >&2
! grep -qE ' [1-9][0-9]*$' "$summary"
