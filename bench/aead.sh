#!/usr/bin/env bash
# Seal/open throughput of clawhold's AEAD path beside OpenSSL's EVP AEADs, in
# one run on one machine. Usage: bench/aead.sh [seconds-per-openssl-size]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
echo "# machine: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# go: $(go version | cut -d' ' -f3), openssl: $(openssl version | cut -d' ' -f2)"
echo
echo "## clawhold (go test -bench, MB/s = 10^6 bytes/s)"
go test -run '^$' -bench 'Benchmark(Seal|Open|Primitive)' -benchtime "${secs}s" ./keys | grep -E '^Benchmark' \
  | awk '{printf "%-55s %12s MB/s\n", $1, $(NF-1)}'
echo
echo "## openssl speed -evp (same machine, same run; openssl reports kB/s = 10^3 bytes/s)"
for alg in aes-256-gcm chacha20-poly1305; do
  for size in 1024 65536 1048576; do
    kbs=$(openssl speed -seconds "$secs" -evp "$alg" -bytes "$size" 2>/dev/null | awk -v a="$alg" 'tolower($1)==a || $1 ~ /^(AES-256-GCM|ChaCha20-Poly1305)$/ {print $NF}' | tail -1)
    kbs=${kbs%k}
    printf "openssl %-20s %8d B  %12.2f MB/s\n" "$alg" "$size" "$(echo "$kbs / 1000" | bc -l)"
  done
done
