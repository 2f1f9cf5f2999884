# clawhold: `make build` builds bin/clawhold; `make test` installs what the
# tests need (Node 24 + OpenClaw from npm, PostgreSQL from Debian, KMS test
# servers from the Go module proxy) and runs every test.
GO      ?= go
BIN     := bin/clawhold
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test check bench fuzz clean

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/clawhold

test:
	scripts/test.sh

# Static checks only (fast).
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

bench:
	bench/aead.sh
	bench/provider.sh
	bench/egress.sh

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseHeader -fuzztime 60s ./keys
	$(GO) test -run '^$$' -fuzz FuzzServeProvider -fuzztime 60s ./secrets
	$(GO) test -run '^$$' -fuzz FuzzProxyRequest -fuzztime 60s ./egress
	$(GO) test -run '^$$' -fuzz FuzzScrub -fuzztime 60s ./egress
	$(GO) test -run '^$$' -fuzz FuzzTokenFromRequest -fuzztime 60s ./frontdoor/session
	$(GO) test -run '^$$' -fuzz FuzzFlowCookie -fuzztime 60s ./frontdoor/oidc
	$(GO) test -run '^$$' -fuzz FuzzParsePHC -fuzztime 60s ./frontdoor/account

clean:
	rm -rf bin
