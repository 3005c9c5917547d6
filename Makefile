# mediaedge — see README.md. Every target works on a fresh Debian 12 machine
# with Go 1.26 on PATH; `make test` is what CI runs (.ci/run).

GO        ?= go
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR   ?= /lib/systemd/system
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w -X github.com/mediaedge/mediaedge/internal/buildinfo.Version=$(VERSION) \
             -X github.com/mediaedge/mediaedge/internal/buildinfo.Commit=$(COMMIT)
FUZZTIME  ?= 20s
# golangci-lint runs gofmt, go vet, staticcheck and errorlint as
# .golangci.yml says; `go run` builds it from the Go module proxy.
GOLANGCI  ?= github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: bpf all build run test lint fuzz bench units install clean demo deb man soak

all: build

# Regenerates the BPF programs (the relay's fast path, the sk_lookup
# steering of internal/steer: objects + Go bindings, committed so
# that building needs no clang). Needs clang and libbpf-dev.
bpf:
	$(GO) generate ./relay/fastpath/ ./internal/steer/

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/mediaedge ./cmd/mediaedge

# Runs the daemon in the foreground on the embedded default configuration:
# loopback only, no root needed, the host's routing untouched. Ctrl-C stops it.
run: build
	./bin/mediaedge run

# The whole test suite. Tests that need root or a Debian tool (coturn,
# ffmpeg, GStreamer, tcpdump, nftables) skip with a message when it is
# missing; .ci/run installs them so they run in CI.
test: build
	$(GO) vet ./...
	@# The race detector needs cgo (gcc); without it the tests still run.
	@if command -v gcc >/dev/null; then CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 14m ./...; \
	 else echo "NOTE: gcc not installed, running the tests without -race"; $(GO) test -count=1 -timeout 14m ./...; fi
	@if command -v systemd-analyze >/dev/null; then ./systemd/check-units.sh bin/mediaedge; \
	 else echo "SKIP unit checks: systemd-analyze not installed (apt-get install systemd)"; fi
	@# The soak runs only when SOAK is set (the CI profile sets SOAK=2m).
	@if [ -n "$(SOAK)" ]; then $(MAKE) soak SOAK=$(SOAK); fi

# What CI enforces before the tests (.ci/run). gofmt -l also covers the
# files built only on other systems, which golangci-lint does not load here.
lint:
	./.ci/subjects
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(GOLANGCI) run ./...

# Runs every fuzz target for FUZZTIME each; a failure counts only when it
# wrote a reproducer (see .ci/fuzz). CI runs `make fuzz FUZZTIME=3s`, a
# smoke test of every target; a longer run finds more.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./.ci/fuzz

# The standard suite (docs/bench.md): gateway with 1 and 100 streams of 160
# and 1200 bytes, relay with 1, 10 and 100 allocations, against mediaedge and,
# when installed, rtpengine and coturn in the same run. One measurement at a
# time on this machine (flock); writes bench-results/<date>/report.md.
bench: build
	@out=bench-results/$$(date +%Y%m%d-%H%M%S); \
	flock /tmp/mediaedge-perf.lock ./bin/mediaedge bench suite --out "$$out" $(BENCHFLAGS)

# The end-to-end scenario for people (docs/demo.md): a branch office built
# from network namespaces, the real daemon on its edge, a PASS/FAIL line with
# evidence per claim and a summary. Needs root, iproute2, nftables and
# tcpdump; removes everything it made, also on Ctrl-C. DEMOFLAGS=-hold waits
# before the final SIGTERM so that you can look around; -keep keeps the
# configuration, daemon log and captures.
demo: build
	CGO_ENABLED=0 $(GO) build -o bin/mediaedge-demo ./e2e/cmd/demo
	./bin/mediaedge-demo -bin bin/mediaedge $(DEMOFLAGS)

# The soak (docs/soak.md): the real daemon with 10,000 TURN allocations and
# 10,000 gateway sessions, media on a sample of each, churn and a reload a
# minute for SOAK (default 30m); writes soak-results/<date>/report.md and
# a plot, and fails when a figure drifts, a sampled packet is lost or an
# error is logged. One measurement at a time on this machine (flock).
soak: build
	CGO_ENABLED=0 $(GO) build -o bin/mediaedge-soak ./soak/cmd/soak
	@out=soak-results/$$(date +%Y%m%d-%H%M%S); \
	flock /tmp/mediaedge-perf.lock ./bin/mediaedge-soak -bin bin/mediaedge -duration $(or $(SOAK),30m) -out "$$out" $(SOAKFLAGS)

units: build
	./systemd/check-units.sh

install: build
	install -D -m 0755 bin/mediaedge $(DESTDIR)$(BINDIR)/mediaedge
	install -d $(DESTDIR)$(UNITDIR)
	sed "s|@BINDIR@|$(BINDIR)|g" systemd/mediaedge.service.in > $(DESTDIR)$(UNITDIR)/mediaedge.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mediaedge.service
	install -D -m 0644 systemd/mediaedge.sysusers $(DESTDIR)/usr/lib/sysusers.d/mediaedge.conf
	install -D -m 0644 systemd/mediaedge.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/mediaedge.conf
	install -D -m 0644 systemd/mediaedge.sysctl $(DESTDIR)/usr/lib/sysctl.d/60-mediaedge.conf
	@# The unit runs as user mediaedge and reads its configuration through
	@# group mediaedge (ExecStartPre= config check included): directory
	@# 0750 and file 0640, both root:mediaedge. Before systemd-sysusers made
	@# the group, the tmpfiles.d lines give them to it at systemd-tmpfiles
	@# --create.
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/mediaedge
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/mediaedge/mediaedge.yaml ]; then \
	  echo "install -m 0640 systemd/mediaedge.yaml $(DESTDIR)$(SYSCONFDIR)/mediaedge/mediaedge.yaml"; \
	  install -m 0640 systemd/mediaedge.yaml $(DESTDIR)$(SYSCONFDIR)/mediaedge/mediaedge.yaml; \
	  fresh=$(DESTDIR)$(SYSCONFDIR)/mediaedge/mediaedge.yaml; \
	else echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/mediaedge/mediaedge.yaml"; fresh=; fi; \
	if getent group mediaedge >/dev/null && chgrp mediaedge $(DESTDIR)$(SYSCONFDIR)/mediaedge $$fresh 2>/dev/null; then \
	  echo "group mediaedge may read $(DESTDIR)$(SYSCONFDIR)/mediaedge"; \
	else echo "NOTE: $(DESTDIR)$(SYSCONFDIR)/mediaedge stays root:root until group mediaedge exists: run systemd-sysusers, then systemd-tmpfiles --create"; fi

# The Debian package (docs/operations.md): binary, unit, sysusers, tmpfiles,
# sysctl, the example configuration as a conffile, manual pages and shell
# completions, built with dpkg-deb into dist/. `go test ./packaging/deb`
# (as root) installs it into a throwaway overlay of / and purges it.
deb: build
	./packaging/deb/build.sh bin/mediaedge $(VERSION) dist

# Manual pages generated from the command tree, into bin/man.
man: build
	./bin/mediaedge man --dir bin/man

clean:
	rm -rf bin dist
