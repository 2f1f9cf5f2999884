#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (front door pages), once.
# Prints the browser's path on stdout.
set -euo pipefail
if ! command -v chromium >/dev/null; then
	echo "chromium.sh: installing Debian's chromium" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends chromium >&2 ||
		{ apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
fi
command -v chromium
