#!/usr/bin/env bash
# Sandbox start-up and exec-logging cost, side by side in one run:
#   1. start-to-exit latency of /bin/true: plain exec, bwrap --unshare-all
#      (Debian's bubblewrap, the same read-only binds), clawhold sandbox run
#      with a bwrap-equivalent profile (namespaces, binds, Landlock,
#      seccomp; no cgroup, no proxy, no exec log), and with the default
#      profile (+ cgroup limits, egress proxy, exec log).
#   2. exec-logging overhead: a shell starting 2,000 processes, in the same
#      sandbox with exec_log on and off.
#   3. (OPENCLAW=1) the OpenClaw gateway's time to /readyz and RSS inside
#      the openclaw profile and outside it; see bench/sandbox/openclaw.sh.
# Goals (issue): within 1.5x of bwrap; logging overhead under 10%.
#
# Needs root (cgroups, uid mapping), hyperfine and bubblewrap (Debian).
# Results: stdout and bench/out/sandbox.md.
#   RUNS=50  hyperfine runs for /bin/true      RUNS2=10 for the 2,000-process loop
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-50}
RUNS2=${RUNS2:-10}
mkdir -p bench/out
for tool in hyperfine bwrap; do
	command -v "$tool" >/dev/null || { echo "bench/sandbox.sh: needs $tool (apt-get install hyperfine bubblewrap)" >&2; exit 1; }
done
make -s build
BIN=$PWD/bin/clawhold
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CLAWHOLD_DATA_DIR=$tmp/data # not initialized: events are not recorded

# A profile with what bwrap --unshare-all gets: namespaces and binds (plus
# clawhold's Landlock, seccomp and capability drop, which bwrap lacks).
cat >"$tmp/bare.yaml" <<'Y'
description: bench — namespaces, binds, Landlock, seccomp; no cgroup, proxy or exec log
filesystem:
  read_only: [/usr, /bin, /sbin, /lib, "/lib64?"]
  etc: [passwd, group, ld.so.cache]
network: {mode: none}
exec_log: false
degraded: [cgroups]
Y
sed 's/exec_log: false/exec_log: true/; s/description: bench —/description: bench, logged —/' "$tmp/bare.yaml" >"$tmp/logged.yaml"

BWRAP=(bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib)
[ -e /lib64 ] && BWRAP+=(--symlink usr/lib64 /lib64)
BWRAP+=(--ro-bind /etc/passwd /etc/passwd --ro-bind /etc/group /etc/group --ro-bind /etc/ld.so.cache /etc/ld.so.cache --proc /proc --dev /dev --tmpfs /tmp)

echo "## /bin/true, start to exit" | tee bench/out/sandbox.md
hyperfine -N --warmup 5 --runs "$RUNS" --export-markdown "$tmp/true.md" \
	-n plain '/bin/true' \
	-n 'bwrap --unshare-all' "${BWRAP[*]} /bin/true" \
	-n 'clawhold (bare profile)' "$BIN sandbox run --record=false --profile $tmp/bare.yaml -- /bin/true" \
	-n 'clawhold (default profile)' "$BIN sandbox run --record=false --profile default -- /bin/true"
cat "$tmp/true.md" | tee -a bench/out/sandbox.md

echo "## 2,000 processes, exec log off vs on" | tee -a bench/out/sandbox.md
loop='i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done'
hyperfine -N --warmup 1 --runs "$RUNS2" --export-markdown "$tmp/loop.md" \
	-n 'not logged' "$BIN sandbox run --record=false --profile $tmp/bare.yaml -- /bin/sh -c '$loop'" \
	-n 'logged' "$BIN sandbox run --record=false --profile $tmp/logged.yaml --events /dev/null -- /bin/sh -c '$loop'"
cat "$tmp/loop.md" | tee -a bench/out/sandbox.md
