#!/usr/bin/env bash
# Secret scanning throughput: clawhold's scanner (audit.SecretScanner, via
# bench/secretscan) beside the gitleaks CLI at the version in go.mod, on the
# same data: a synthetic repository made of large modules from the Go
# module cache, one commit each, plus a commit adding a fake AWS key and one
# deleting it (SRC: space-separated module paths, default below). Both scan
# the whole history (`gitleaks git` / mode git) and a plain copy of the
# tree (`gitleaks dir` / mode dir), ROUNDS times each, alternating; the
# best round is kept. MB/s divides the bytes handed to the detector (added
# lines of every commit for git, text files for dir, as clawhold counts
# them) by each process's wall time, which includes compiling the rules and
# running `git log -p`. Both use
# gitleaks' default rules, decode depth 5 and skip files over 8 MB in dir
# mode (--max-target-megabytes 8, clawhold's bound).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SRC=${SRC:-"golang.org/x/text go.opentelemetry.io/otel github.com/klauspost/compress"}
tmp=$(mktemp -d /var/tmp/clawhold-secretscan.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
glver=$(go list -m -f '{{.Version}}' github.com/zricethezav/gitleaks/v8)
go build -ldflags "-X github.com/zricethezav/gitleaks/v8/version.Version=$glver" -o "$tmp/gitleaks" github.com/zricethezav/gitleaks/v8
go build -o "$tmp/secretscan" ./bench/secretscan

g() { git -C "$tmp/repo" -c user.name=bench -c user.email=bench@example.com -c commit.gpgsign=false -c gc.auto=0 -c maintenance.auto=false "$@"; }
mkdir -p "$tmp/tree" "$tmp/repo"
g init -q -b main
for m in $SRC; do
	d=$(go list -m -f '{{.Dir}}' "$m")
	[ -d "$d" ] || { echo "module $m is not in the module cache" >&2; exit 1; }
	name=$(echo "$m" | tr / _)
	cp -r "$d" "$tmp/repo/$name" && chmod -R u+w "$tmp/repo/$name"
	g add -A && g commit -q -m "add $m"
done
key="AKIA""QYLPMN5HHHFPZAM2" # fake, in the shape gitleaks' aws-access-token rule matches
printf 'REGION=eu-west-1\nAWS_KEY=%s\n' "$key" >"$tmp/repo/deploy.env"
g add deploy.env && g commit -q -m "add deploy config"
g rm -q deploy.env && g commit -q -m "remove deploy config"
g gc -q
(cd "$tmp/repo" && git archive HEAD | tar -x -C "$tmp/tree")

now() { date +%s.%N; }
best() { sort -n | head -1; } # best of the rounds
declare -A t
for mode in git dir; do
	src=$tmp/repo
	[ $mode = dir ] && src=$tmp/tree
	: >"$tmp/gl.$mode" >"$tmp/ch.$mode"
	for _ in $(seq "$ROUNDS"); do
		s=$(now)
		"$tmp/gitleaks" $mode "$src" --no-banner --exit-code 0 --max-decode-depth 5 --max-target-megabytes 8 \
			--report-format json --report-path "$tmp/gl-$mode.json" --log-level error
		echo "$(now) - $s" | bc >>"$tmp/gl.$mode"
		s=$(now)
		"$tmp/secretscan" -mode $mode "$src" >"$tmp/ch-$mode.out"
		echo "$(now) - $s" | bc >>"$tmp/ch.$mode"
	done
	t[gl.$mode]=$(best <"$tmp/gl.$mode")
	t[ch.$mode]=$(best <"$tmp/ch.$mode")
done

echo "secret scanning, $(nproc) CPUs, gitleaks $glver, $(du -sm "$tmp/tree" | cut -f1) MB tree, $(g rev-list --count HEAD) commits, best of $ROUNDS"
printf '%-5s %10s %6s | %-22s %8s %8s | %-22s %8s %8s\n' mode "MB scanned" files "scanner" secs "MB/s" "scanner" secs "MB/s"
for mode in git dir; do
	read -r _ bytes files hits _ _ <"$tmp/ch-$mode.out"
	glhits=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/gl-$mode.json")
	mb=$(echo "scale=1; $bytes/1000000" | bc)
	printf '%-5s %10s %6s | %-22s %8.2f %8.1f | %-22s %8.2f %8.1f\n' $mode "$mb" "$files" \
		"gitleaks $mode ($glhits hits)" "${t[gl.$mode]}" "$(echo "$bytes/1000000/${t[gl.$mode]}" | bc -l)" \
		"clawhold ($hits hits)" "${t[ch.$mode]}" "$(echo "$bytes/1000000/${t[ch.$mode]}" | bc -l)"
done
