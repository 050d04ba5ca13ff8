# loraflow: `make demo` and `make test` bootstrap everything they need (idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help setup dev demo test stop contract chaos bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t12

setup: ## install the pinned toolchain, Python env, tiny models and node packages (idempotent)
	@./scripts/setup.sh

dev: setup ## run the embedded stack in the foreground (Ctrl-C stops it)
	@npx tsx client.ts dev

demo: setup ## start the stack in the background and train a LoRA on samples/demo
	@./scripts/demo.sh

test: setup ## run every test (pytest + vitest) and print the totals
	@./scripts/test.sh

stop: ## stop a stack started by `make demo`
	@./scripts/stop.sh

contract: ## regenerate the files generated from one source: contract/schema/*.json (zod contract), docs/configuration.md (lib/config.ts)
	@npm run -s contract

bench: setup ## run the benchmarks (BENCH_QUICK=1 or BENCH_ARGS=--quick for a short run); writes bench/results/SUMMARY.md
	@npx tsx bench/run.ts $(BENCH_ARGS)

chaos: setup ## the chaos suite: pipelines under injected faults, audited (QUICK=1 for the short mode)
	@npx tsx chaos/run.ts $(if $(QUICK),--quick,)
