#!/usr/bin/env bash
# Egress forward proxy, side by side on loopback: `clawhold egress serve`
# against squid and tinyproxy (Debian packages), each with an allow-all policy,
# plus a direct (proxy-less) baseline, in one run of the load generator
# ./bench/egress:
#   - CONNECT tunnel throughput, MB/s (10^6) for one BYTES transfer
#   - new-tunnel rate, tunnels/s with CONC concurrent clients for DURATION s
#   - added latency per request, p50/p99 µs (proxy minus direct), for
#     absolute-URI GETs (new connection / keep-alive) and GETs in a CONNECT
#     tunnel (new tunnel / one tunnel)
# Goal (issue): beat squid on all three, tinyproxy on throughput.
#
# Everything listens on and dials 127.0.0.1 only. Each proxy runs in the
# foreground as a child of this script with a private config, pid, log and
# cache directory under a mktemp dir, on its own free port, and is killed at
# the end. The table goes to stdout and bench/out/egress.md; JSON lines to
# bench/out/egress.jsonl.
#
# Environment (defaults are sized for a shared 2-core box):
#   BYTES=1073741824  throughput transfer size        UP=1  also client→upstream
#   DURATION=10       connrate seconds per proxy      CONC=64 connrate clients
#   LAT_N=2000        latency requests per mode/proxy LAT_CONC=1 latency workers
#   ROUNDS=1          repeat all (median for throughput/connrate; use 3 on a
#                     busy box)
#   INTERLEAVE=1      latency: alternate proxies request by request (0: one
#                     proxy after the other)
#   TESTS=throughput,connrate,latency
#   PROXIES="clawhold squid tinyproxy"   which proxies to run
#   PIN=1             pin proxies to CPU 1 and the load generator to CPU 0
#                     (experimental: on a 2-core box it cut squid throughput
#                     ~4x and inflated p99s; compare runs with the same PIN)
#   CLAWHOLD_BIN=path use this clawhold binary instead of building ./cmd/clawhold
#   KEEP=1            keep the temp dir (configs, proxy logs) for debugging
#   CLAWHOLD_EVENTS=f clawhold's --events file (default /dev/null)
set -euo pipefail
cd "$(dirname "$0")/.."

BYTES=${BYTES:-1073741824}
DURATION=${DURATION:-10}
CONC=${CONC:-64}
LAT_N=${LAT_N:-2000}
LAT_CONC=${LAT_CONC:-1}
ROUNDS=${ROUNDS:-1}
TESTS=${TESTS:-throughput,connrate,latency}
PROXIES=${PROXIES:-clawhold squid tinyproxy}
UP=${UP:-0}
PIN=${PIN:-0}
INTERLEAVE=${INTERLEAVE:-1}

# ---- clawhold: the one place to adjust once `clawhold egress serve` lands ----
# The config is clawhold's YAML (the global --config flag, see config/egress.go);
# the policy must allow loopback explicitly, since the upstreams are on
# 127.0.0.1. The listen address is given both in the file and as --listen;
# drop whichever the command does not take. Default limits apply (max_conns
# 512 >= CONC, no bytes_per_second limit).
CLAWHOLD_POLICY=bench
# clawhold_config PORT: the config file.
clawhold_config() {
  cat <<EOF
egress:
  listen: 127.0.0.1:$1
  policies:
    $CLAWHOLD_POLICY:
      rules:
        - action: allow
          host: "*"
          cidrs: ["127.0.0.0/8"]
EOF
}
# clawhold_cmd PORT CONFIG DATADIR: the command line that serves the proxy in
# the foreground until SIGTERM, one word per line. Decision events (one JSON
# line per request/tunnel) go to CLAWHOLD_EVENTS, /dev/null by default for
# parity with squid/tinyproxy, whose access logs are off: the encoding and
# write(2) are still paid, the disk is not. Set CLAWHOLD_EVENTS=/path/file to
# measure with a real events file.
clawhold_cmd() {
  printf '%s\n' "$work/clawhold" --data-dir "$3" --config "$2" \
    egress serve --listen "127.0.0.1:$1" --policy "$CLAWHOLD_POLICY" \
    --events "${CLAWHOLD_EVENTS:-/dev/null}"
}
# ------------------------------------------------------------------------------

work=$(mktemp -d)
chmod 755 "$work" # squid and tinyproxy drop privileges to proxy / nobody
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null && echo "# had to SIGKILL pid $p" >&2 || true
    wait "$p" 2>/dev/null || true
  done
  if [[ ${KEEP:-0} == 1 ]]; then echo "# kept $work (configs, logs)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

want() { [[ " $PROXIES " == *" $1 "* ]]; }

need=()
want squid && ! command -v squid >/dev/null && need+=(squid)
want tinyproxy && ! command -v tinyproxy >/dev/null && need+=(tinyproxy)
if ((${#need[@]})); then
  echo "# installing ${need[*]}" >&2
  # Debian's postinst would start the system services; forbid that.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && rmrc=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  [[ -n ${rmrc:-} ]] && rm -f /usr/sbin/policy-rc.d
fi

go build -o "$work/egress-bench" ./bench/egress
pin_proxy=() pin_gen=()
if [[ $PIN == 1 ]]; then pin_proxy=(taskset -c 1) pin_gen=(taskset -c 0); fi
read -r -d '' p_squid p_tiny p_claw < <("$work/egress-bench" -free-ports 3; printf '\0') || true

# wait_port NAME PID PORT: wait until PORT accepts, or the child dies.
wait_port() {
  for _ in $(seq 100); do
    if ! kill -0 "$2" 2>/dev/null; then echo "# $1 exited before listening" >&2; return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "# $1 did not listen on 127.0.0.1:$3 within 10 s" >&2
  return 1
}

targets=()
versions=()

if want squid; then
  d=$work/squid && mkdir -p "$d" && chown proxy: "$d"
  cat > "$d/squid.conf" <<EOF
http_port 127.0.0.1:$p_squid
visible_hostname egress-bench
# Allow all from localhost, CONNECT included, to any port: the stock config's
# Safe_ports / SSL_ports / to_localhost rules are simply absent.
acl benchclient src 127.0.0.1/32
http_access allow benchclient
http_access deny all
# No caching, no disk logs, no helpers.
cache deny all
cache_mem 8 MB
access_log none
cache_store_log none
cache_log $d/cache.log
logfile_rotate 0
pid_filename $d/squid.pid
coredump_dir $d
pinger_enable off
client_db off
via off
forwarded_for delete
shutdown_lifetime 0 seconds
max_filedescriptors 16384
# Never send DNS anywhere but loopback (all targets are IP literals anyway).
dns_nameservers 127.0.0.1
cache_effective_user proxy
EOF
  # -N: foreground, no SMP workers; -n: own service name (shm, no clash with
  # a system squid).
  "${pin_proxy[@]}" squid -N -n "egressbench$$" -f "$d/squid.conf" > "$d/stdout.log" 2>&1 &
  pid=$!; pids+=("$pid")
  if wait_port squid "$pid" "$p_squid"; then
    targets+=(-proxy "squid=http://127.0.0.1:$p_squid")
    versions+=("squid $(squid -v | sed -n 's/^Squid Cache: Version //p')")
  else
    tail -20 "$d/stdout.log" "$d/cache.log" >&2 || true
  fi
fi

if want tinyproxy; then
  d=$work/tinyproxy && mkdir -p "$d" && chown nobody: "$d"
  cat > "$d/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $p_tiny
Listen 127.0.0.1
Timeout 600
LogFile "$d/tinyproxy.log"
LogLevel Critical
PidFile "$d/tinyproxy.pid"
MaxClients 1024
Allow 127.0.0.1
DisableViaHeader Yes
# No ConnectPort line: CONNECT to every port is allowed.
EOF
  "${pin_proxy[@]}" tinyproxy -d -c "$d/tinyproxy.conf" > "$d/stdout.log" 2>&1 &
  pid=$!; pids+=("$pid")
  if wait_port tinyproxy "$pid" "$p_tiny"; then
    targets+=(-proxy "tinyproxy=http://127.0.0.1:$p_tiny")
    versions+=("$(tinyproxy -v 2>&1 | head -1)")
  else
    tail -20 "$d/stdout.log" "$d/tinyproxy.log" >&2 || true
  fi
fi

if want clawhold; then
  d=$work/clawhold-run && mkdir -p "$d/data"
  if [[ -n ${CLAWHOLD_BIN:-} ]]; then
    cp "$CLAWHOLD_BIN" "$work/clawhold"
  elif ! go build -o "$work/clawhold" ./cmd/clawhold 2>"$d/build.log"; then
    echo "# clawhold: ./cmd/clawhold does not build, skipping:" >&2; head -5 "$d/build.log" >&2
  fi
  if [[ ! -x $work/clawhold ]]; then
    :
  elif ! "$work/clawhold" egress serve --help 2>&1 | grep -q 'egress serve'; then
    echo "# clawhold: no 'clawhold egress serve' command yet, skipping" >&2
  else
    clawhold_config "$p_claw" > "$d/clawhold.yaml"
    mapfile -t cmd < <(clawhold_cmd "$p_claw" "$d/clawhold.yaml" "$d/data")
    echo "# clawhold: ${cmd[*]}" >&2
    "${pin_proxy[@]}" "${cmd[@]}" > "$d/stdout.log" 2>&1 &
    pid=$!; pids+=("$pid")
    if wait_port clawhold "$pid" "$p_claw"; then
      targets=(-proxy "clawhold=http://127.0.0.1:$p_claw" "${targets[@]}")
      versions+=("clawhold $(git describe --always --dirty 2>/dev/null || echo '?')")
    else
      tail -20 "$d/stdout.log" >&2 || true
    fi
  fi
fi

mkdir -p bench/out
gen=("$work/egress-bench" -tests "$TESTS" -bytes "$BYTES" -duration "${DURATION}s" -conc "$CONC"
  -lat-n "$LAT_N" -lat-conc "$LAT_CONC" -rounds "$ROUNDS" -json "$work/out.jsonl" -md "$work/table.md")
[[ $UP == 1 ]] && gen+=(-up)
[[ $INTERLEAVE == 1 ]] || gen+=(-interleave=false)
"${pin_gen[@]}" "${gen[@]}" "${targets[@]}" > "$work/stdout" 2>"$work/stderr" || {
  cat "$work/stderr" >&2; exit 1
}
grep '^#' "$work/stderr" >&2 || true

{
  echo "# Egress proxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Loopback only; $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r), $(go version | cut -d' ' -f3)."
  echo "$(IFS=';'; echo "${versions[*]:-no proxies}" | sed 's/;/; /g')."
  echo "BYTES=$BYTES DURATION=${DURATION}s CONC=$CONC LAT_N=$LAT_N LAT_CONC=$LAT_CONC ROUNDS=$ROUNDS PIN=$PIN INTERLEAVE=$INTERLEAVE."
  echo "Throughput MB = 10^6 bytes. Added latency = proxy percentile − direct percentile of the same connection model"
  echo "(new conn or keep-alive); direct has no CONNECT, so its CONNECT rows repeat its plain numbers in parentheses."
  echo "Throughput and tunnel rate run one proxy at a time; latency alternates proxies request by request (INTERLEAVE=1)."
  echo "\"upstream conns\" counts connections the proxy opened to the HTTP upstream (0 or 1: it pools them)."
  echo
  cat "$work/table.md"
} > bench/out/egress.md
cp "$work/out.jsonl" bench/out/egress.jsonl
cat bench/out/egress.md
