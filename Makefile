# bigpipe developer commands. `make help` lists them.
SHELL := /bin/bash
CONFIG ?= conf/bigpipe.toml
CARGO ?= cargo
MUSL_TARGET := x86_64-unknown-linux-musl

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Debug build
	$(CARGO) build

.PHONY: run
run: ## Run bigpipe with $(CONFIG), starting a local Kafka if the configured one does not answer
	scripts/run.sh $(CONFIG)

.PHONY: check-config
check-config: ## Validate $(CONFIG) and list every problem (the shipped ACL secrets come from run/, see scripts/demo-secrets.sh)
	. scripts/demo-secrets.sh && $(CARGO) run --quiet -- --config $(CONFIG) check-config

.PHONY: unit
unit: ## Unit tests only (no Kafka)
	$(CARGO) test --lib

.PHONY: it
it: ## Integration tests in it/ against a real Kafka (started and stopped here)
	scripts/it.sh

.PHONY: it-matrix
it-matrix: ## The integration tests against each Kafka version (KAFKA_MATRIX="4.3.1 3.9.1 2.8.2" by default), one after another, with a summary table
	scripts/kafka-matrix.sh $(KAFKA_MATRIX)

.PHONY: it-docker
it-docker: ## The integration tests with Kafka in containers (starts dockerd if needed, builds the images of scripts/images.sh)
	scripts/it-docker.sh $(ARGS)

.PHONY: images
images: ## Container images without a registry: Debian base (debootstrap), Kafka from the Maven jars, bigpipe FROM scratch
	scripts/images.sh all

.PHONY: chaos
chaos: ## The fault suite only (real Kafka; single broker and a 3-broker cluster)
	scripts/it.sh chaos:: --nocapture

.PHONY: test
test: unit it bench-smoke ## Unit tests, the integration tests (fault suite included) against a real Kafka, a bench smoke run

.PHONY: kafka-up
kafka-up: ## Start the local single-node Kafka (fetched from Maven Central)
	scripts/kafka.sh up

.PHONY: kafka-down
kafka-down: ## Stop the local Kafka
	scripts/kafka.sh down

.PHONY: kafka-cluster-up
kafka-cluster-up: ## Start the local 3-broker Kafka cluster
	scripts/kafka.sh up --cluster

.PHONY: kafka-cluster-down
kafka-cluster-down: ## Stop the local 3-broker Kafka cluster
	scripts/kafka.sh down --cluster

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

.PHONY: musl
musl: ## Static x86_64-unknown-linux-musl release binary; fails if it is not static or anything compiles C
	scripts/check-static.sh

.PHONY: bench
bench: ## Benchmark vs Kafka's own tools on a private Kafka (127.0.0.1:9492) -> bench-out/
	scripts/bench.sh

.PHONY: bench-smoke
bench-smoke: ## The benchmark with tiny sizes (seconds of measuring); fails if any step fails
	BENCH_SMOKE=1 BENCH_OUT=bench-out/smoke scripts/bench.sh
