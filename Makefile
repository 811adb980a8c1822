# Posthorn: build, test, run a demo.
GO      ?= go
BIN     := bin/posthorn
DEMO    := demo
PKGS    := ./...

.PHONY: build test bench run clean fuzz crashtest vet

build:
	$(GO) build -o $(BIN) ./cmd/posthorn

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Everything CI runs: gofmt and vet, every test with the race detector (which
# includes the short crash test, the hostile-input tests and every fuzz
# target's seeds), then a few seconds of fuzzing per target.
test: vet
	$(GO) test -race -timeout 9m $(PKGS)
	bash tests/fuzz/run.sh 2s

# Benchmarks with the figures the issues ask for.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 200x -timeout 30m ./store/ ./mta/ ./maa/... ./msa/ ./mailio/ ./auth/

# A demo on unprivileged ports: domain example.test, user demo@example.test.
run: build
	./$(BIN) demo --dir $(DEMO)

clean:
	rm -rf bin $(DEMO)

# The long crash test (N=10,000, 200 kills) and the full-size hostile tests.
crashtest:
	POSTHORN_CRASH_N=10000 POSTHORN_CRASH_KILLS=200 POSTHORN_CRASH_WORKERS=16 \
	POSTHORN_CRASH_OUTBOUND_N=1000 POSTHORN_CRASH_OUTBOUND_KILLS=30 \
	$(GO) test -count=1 -v -timeout 60m -run TestCrash ./tests/crash/
	POSTHORN_HOSTILE_SEARCH_N=100000 $(GO) test -count=1 -v -timeout 30m ./tests/hostile/

FUZZTIME ?= 60s
fuzz:
	bash tests/fuzz/run.sh $(FUZZTIME)

# Postfix+Dovecot installed privately, the same load against both.
bench-peers:
	bash bench/peers/run.sh
