#!/bin/sh
# Issue 9's benchmarks, side by side in one run (docs/benchmarks.md,
# "Monitoring"):
#   - command-rule throughput on one core with the default rules
#     (monitor/cmdrule BenchmarkEvaluate, the labelled corpus);
#   - latency from an exec event to its alert at a sink through the whole
#     pipeline clawhold up runs: recorder, raw table, ship into the sealed
#     log, rules, dispatcher (monitor BenchmarkEventToAlert, p50/p99);
#   - alert dispatch to a signed webhook (monitor/alert);
#   - audit-log append rate with sealing and chaining, beside plain
#     unsealed event rows and beside Ship (monitor/auditlog);
#   - the cost of fanotify tracking on a file-heavy workload, watcher off
#     and on in the same iteration (monitor/fileaccess; needs root);
#   - the anomaly detector per event (monitor/anomaly).
# Usage: bench/monitor.sh
set -eu
cd "$(dirname "$0")/.."
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench 'BenchmarkEvaluate$' -cpu 1 -benchtime 3s ./monitor/cmdrule
go test -run '^$' -bench 'BenchmarkEventToAlert' -benchtime 1x ./monitor
go test -run '^$' -bench 'BenchmarkDispatchWebhook' ./monitor/alert
go test -run '^$' -bench 'BenchmarkAppend' -benchtime 3s ./monitor/auditlog
CI=true go test -run '^$' -bench . -benchtime 3s ./monitor/fileaccess
go test -run '^$' -bench . ./monitor/anomaly
