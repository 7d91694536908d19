# cosign: container signing, verification and storage in an OCI registry.

GO      ?= go
BIN     := bin/cosign
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Where `make install` puts cosign (and the cosine symlink): GOBIN, else GOPATH/bin.
INSTALL_DIR ?= $(shell d="$$($(GO) env GOBIN)"; [ -n "$$d" ] && echo "$$d" || echo "$$($(GO) env GOPATH)/bin")

# The real sigstore cosign the interoperability tests run (built by
# scripts/install-sigstore-cosign.sh when missing); the tests read this variable.
SIGSTORE_COSIGN ?= $(shell $(GO) env GOPATH)/sigstore-cosign/v3.1.2/cosign
export SIGSTORE_COSIGN

.PHONY: all build test test-deps vet fmt-check fuzz install proxy bench clean

all: build

## build: static binary at bin/cosign
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cosign

## test: install missing test dependencies, then vet, gofmt check, every test with -race,
## the manifests of the nested deploy/ module,
## then every fuzz target for FUZZTIME (3s) each
test: test-deps vet fmt-check
	CGO_ENABLED=1 $(GO) test -race -timeout 20m ./...
	cd deploy && $(GO) vet ./... && $(GO) test ./...
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' scripts/fuzz.sh

## fuzz: run every `func Fuzz*` of the module, one after the other, for FUZZTIME each
## (`make fuzz FUZZTIME=1m`); stops at the first failure
FUZZTIME ?= 3s
fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' scripts/fuzz.sh

## test-deps: install what the e2e tests run (docker-registry, openssl, skopeo, ...,
## and the real sigstore cosign for interoperability tests) when missing
test-deps:
	scripts/install-test-deps.sh
	GO='$(GO)' scripts/install-sigstore-cosign.sh

vet:
	$(GO) vet ./...

fmt-check:
	@files="$$(gofmt -l .)"; if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

## install: cosign into $(INSTALL_DIR), plus a `cosine` symlink (the seed README's spelling)
install: build
	mkdir -p '$(INSTALL_DIR)'
	install -m 0755 $(BIN) '$(INSTALL_DIR)/cosign'
	ln -sf cosign '$(INSTALL_DIR)/cosine'
	@echo "installed $(INSTALL_DIR)/cosign and $(INSTALL_DIR)/cosine"

## proxy: run the verifying proxy's embedded demo on 127.0.0.1:5050
proxy:
	$(GO) run ./cmd/cosign proxy

## bench: what verifying on pull costs, against a real docker-registry, nginx and
## distribution's pull-through cache on loopback; prints a table and writes it
## to e2e/bench/RESULTS.md (about 3 minutes; `go run ./e2e/bench -quick` for a smoke run)
bench: test-deps
	$(GO) run ./e2e/bench -out e2e/bench/RESULTS.md

clean:
	rm -rf bin
