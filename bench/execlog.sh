#!/bin/sh
# Measures the cost of exec logging (sandbox/execlog) on a workload that
# starts 2,000 processes: an sh loop running /bin/true "arg-$i" in a child
# that is, per mode,
#   none   - not confined at all
#   deny   - under the seccomp deny list, no notification
#   logged - under the deny list with execve/execveat notification, served
#            by execlog.Logger (proc connector on, JSON lines to /dev/null)
# Issue criterion: logged < 10% slower than unlogged.
#
# Each benchmark iteration runs the three modes back to back; the reported
# numbers are medians over iterations (per-mode times, and the per-iteration
# ratio logged/deny and logged/none), so background load on the machine
# affects all modes alike. Needs root (proc connector).
#
# Usage: bench/execlog.sh [iterations]   (default 10)
set -eu
cd "$(dirname "$0")/.."
n=${1:-10}
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench 'BenchmarkExec2000$' -benchtime "${n}x" ./sandbox/execlog
