# Posthorn: build, test, run a demo.
GO      ?= go
BIN     := bin/posthorn
DEMO    := demo
PKGS    := ./...

.PHONY: build test bench run clean fuzz crashtest vet

build:
	$(GO) build -o $(BIN) ./cmd/posthorn

vet:
	$(GO) vet $(PKGS)

# Everything CI runs: vet, then every test with the race detector.
test: vet
	$(GO) test -race -timeout 9m $(PKGS)

# Benchmarks with the figures the issues ask for.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s -timeout 30m ./store/ ./mta/ ./maa/... ./msa/ ./mta/outbound/

# A demo on unprivileged ports: domain example.test, user demo@example.test.
run: build
	./$(BIN) demo --dir $(DEMO)

clean:
	rm -rf bin $(DEMO)
