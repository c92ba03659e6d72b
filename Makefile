# Run `make help` for the targets.

GOLANGCI_LINT_VERSION := v2.15.0
BIN := bin

export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/backtest?sslmode=disable
export HTTP_ADDR ?= 127.0.0.1:8080

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# FAULT_INJECTION=1 make run builds the test worker, whose fault symbols
# (SLOW, FLAKY, PANIC, CRASH) misbehave on purpose; a plain build cannot.
BUILD_TAGS := $(if $(filter 1,$(FAULT_INJECTION)),faultinject)

.PHONY: build
build: ## Build bin/server and bin/worker (FAULT_INJECTION=1: the test worker with fault symbols)
	@go build -trimpath -tags '$(BUILD_TAGS)' -o $(BIN)/ ./cmd/server ./cmd/worker

.PHONY: run
run: build ## Migrate the local database, print a dev API key, run server and worker
	@scripts/run-dev

.PHONY: migrate
migrate: build ## Create the database if missing and apply migrations
	@$(BIN)/server migrate up

# The race runtime sleeps atexit_sleep_ms (1 s by default) before every exit
# of a race-built process, to let late reports finish: a second for each test
# package and each binary an end-to-end test stops. 50 ms is room enough; a
# GORACE of your own comes after, so it wins.
# TEST_PARALLEL: tests of one package at once. The end-to-end tests mostly
# wait (for a retry, a timeout, a browser), so more than the 2 cores.
TEST_PARALLEL ?= 8

# The end-to-end tests' own process (the harness: it starts binaries, reads
# their output, checks every line against the log schema) runs without the
# race detector in `make test`: under it, that process took 43 s of CPU
# against 23 s, and `make test` 81 s against 56 s. The binaries it starts,
# the service, keep the race detector. test-e2e-race runs the harness under
# it too; .ci/run runs both. scripts/test runs the two at once.
.PHONY: test
test: ## Run every test (needs PostgreSQL, jq, Chromium and lnav; TEST_DATABASE_URL to override, TEST_PARALLEL=8)
	@TEST_PARALLEL=$(TEST_PARALLEL) scripts/test

.PHONY: test-e2e-race
test-e2e-race: ## Run the end-to-end tests with their own process under the race detector too (CI runs it)
	GORACE="atexit_sleep_ms=50 $$GORACE" go test -race -count=1 -parallel $(TEST_PARALLEL) ./e2e

STRESS_RUNS ?= 5

.PHONY: test-stress
test-stress: ## Run make test STRESS_RUNS times (default 5) beside two CPU-bound processes
	@scripts/test-stress $(STRESS_RUNS)

FUZZTIME ?= 15s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 15s)
	go test -run '^$$' -fuzz '^FuzzResolveCorrelationID$$' -fuzztime $(FUZZTIME) ./internal/obs
	go test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./internal/obs
	go test -run '^$$' -fuzz '^FuzzRequestBodies$$' -fuzztime $(FUZZTIME) ./internal/httpx

.PHONY: lint
lint: ## Run golangci-lint and go vet (the bench module too)
	go vet ./... ./bench/...
	golangci-lint run ./... ./bench/...

.PHONY: tools
tools: ## Install golangci-lint
	GOBIN=$$(go env GOPATH)/bin go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: bench
bench: ## Run every comparison of docs/benchmarks.md (ROUNDS=5; BENCH_LARGE=1: 1 GiB trace file; BENCH_SOAK=1: 5-minute soak)
	@bench/run

.PHONY: generate
generate: ## Regenerate generated files (docs/log-schema.json and the events table of docs/logging.md, from internal/logcatalog; api/openapi.json and api/client, from api/openapi.yaml)
	go generate ./...

.PHONY: river-migrations
river-migrations: ## Write goose files for new River schema versions (after a River upgrade)
	go generate ./migrations
