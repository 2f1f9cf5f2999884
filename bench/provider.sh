#!/usr/bin/env bash
# Latency of `clawhold secrets provider` answering OpenClaw's batch of 50 ids
# from a cold process (what the gateway pays at start and on secrets reload),
# beside a static /bin/sh resolver (the floor: a process that prints fixed
# JSON) and a 1-id batch. Uses hyperfine (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "install hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/clawhold" ./cmd/clawhold
d=$work/data
"$work/clawhold" --data-dir "$d" init >/dev/null 2>&1
ids=()
for i in $(seq -w 1 50); do
  head -c 32 /dev/urandom | base64 | "$work/clawhold" --data-dir "$d" secrets set "models/providers/p$i/apiKey" >/dev/null
  ids+=("\"models/providers/p$i/apiKey\"")
done
(IFS=,; printf '{"protocolVersion":1,"provider":"clawhold","ids":[%s]}' "${ids[*]}") > "$work/req50.json"
printf '{"protocolVersion":1,"provider":"clawhold","ids":["models/providers/p01/apiKey"]}' > "$work/req1.json"
"$work/clawhold" --data-dir "$d" secrets provider < "$work/req50.json" > "$work/resp50.json"
printf '#!/bin/sh\ncat >/dev/null\ncat %s\n' "$work/resp50.json" > "$work/static.sh"; chmod 700 "$work/static.sh"
echo "# machine: $(nproc) cores; go $(go version | cut -d' ' -f3); hyperfine $(hyperfine --version | cut -d' ' -f2)"
hyperfine --warmup 3 --runs "${RUNS:-50}" --export-markdown "$work/out.md" \
  -n "clawhold provider, 50 ids" "env -i $work/clawhold --data-dir $d secrets provider < $work/req50.json" \
  -n "clawhold provider, 1 id" "env -i $work/clawhold --data-dir $d secrets provider < $work/req1.json" \
  -n "static /bin/sh resolver (floor)" "env -i $work/static.sh < $work/req50.json" >&2
cat "$work/out.md"
