# RAG-Autotune. `make help` lists the targets. Everything runs from .venv, which the targets create.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONPATH := $(CURDIR)/layers/serve/python:$(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help install run test lint check bench bench-query bench-loop bench-ablation bench-load bench-hybrid bench-ingest bench-night bench-train-budget bench-train-bisect bench-encoder bench-scale layer openapi clean \
        template localstack-build localstack-up localstack-e2e localstack-down

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU wheel on local disk. Anything unpinned would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[serve,train,local,ingest,dev]'
	touch $@

# aws-sam-cli pins pydantic 2.13 (the project needs 2.14), so it lives in a venv of its own. Failing to install it
# only makes the `sam build` test skip.
SAM_VENV ?= .sam-venv
SAM_STAMP := $(SAM_VENV)/.installed
$(SAM_STAMP):
	@env -u PYTHONPATH $(PYTHON) -m venv $(SAM_VENV) && env -u PYTHONPATH $(SAM_VENV)/bin/pip install -q aws-sam-cli==1.170.0 && touch $@ \
	  || echo "aws-sam-cli did not install: the sam build test will skip"

install: $(STAMP) ## create .venv and install serve+train+local+ingest+dev extras

run: $(STAMP) ## serve everything locally (moto as AWS) with the demo corpus on http://127.0.0.1:8000
	$(VENV)/bin/rag-autotune up

test: $(STAMP) $(SAM_STAMP) ## run the whole test suite (unit, contract, integration, e2e; browser tests need chromium)
	@scripts/ensure_browser.sh
	$(PY) -m pytest -q --durations=10

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check layers functions tests scripts
	$(VENV)/bin/mypy

check: lint test ## what CI runs (.ci/run): ruff, mypy, then the whole test suite in random order

bench: bench-query bench-loop bench-load bench-ingest bench-encoder ## all benchmarks that print figures

bench-query: $(STAMP) $(SAM_STAMP) ## /ask latency on a 20k-chunk corpus, cold start, deps size; `up` quiet/votes/tune (ARGS=--only-up)
	$(PY) scripts/bench_query.py $(ARGS)

bench-ingest: $(STAMP) ## pages/s and text quality of each reader and its alternatives on tests/data/ingest_bench
	$(PIP) install -q $$($(PY) scripts/bench_ingest.py --requirements)
	$(PY) scripts/bench_ingest.py

bench-hybrid: $(STAMP) ## P@5, hit@5, nDCG@10 of dense vs hybrid (RRF, DBSF) on the man-page benchmark, train and held-out halves
	$(PY) scripts/bench_hybrid.py

bench-load: $(STAMP) ## 50 clients mix /ask and /feedback for 60 s while a tune run swaps the live pair
	$(PY) scripts/bench_load.py

bench-train-budget: $(STAMP) ## the train step within its time budget at 1k and 3k simulated votes (ARGS=--budget-s 150)
	$(PY) scripts/bench_train_budget.py $(ARGS)

bench-encoder: $(STAMP) ## chunks/s of torch fp32, the previous and the current int8 graph on ~400 man-page chunks; query p50/p99; parity
	$(PY) scripts/bench_encoder.py $(ARGS)

bench-loop: $(STAMP) ## one measured tune run on ~1.9k man pages and 500 simulated votes (~8 min; ARGS=--force-swap, ARGS="--corpus family")
	$(PY) scripts/bench_loop.py $(ARGS)

bench-scale: $(STAMP) ## ingest, embed fan-out (1, 2 workers), train s/step, /ask p99 and cold start at growing sizes; AWS projection (~35 min; ARGS="--chunks 5000,20000,80000 --votes 1000,3000,10000 --vectors 20000,100000,500000")
	nice -n 15 $(PY) scripts/bench_scale.py $(ARGS)

bench-night: $(STAMP) ## one whole nightly run at 31,250 simulated votes on ~1.9k man pages, default settings (~25 min; ARGS="--votes N")
	nice -n 15 $(PY) scripts/bench_night.py $(ARGS)

bench-ablation: $(STAMP) ## base, +memory, +LoRA, +hybrid, +steering, all on one night: man pages, then families (~2×10 min; ARGS="--docs 800 --votes 250")
	nice -n 15 $(PY) scripts/bench_ablation.py --corpus man $(ARGS)
	nice -n 15 $(PY) scripts/bench_ablation.py --corpus family $(ARGS)

bench-train-bisect: $(STAMP) ## the train step's pieces on near-duplicate families: chunk vs document texts, torch vs int8 (ARGS=--variants ...)
	nice -n 15 $(PY) scripts/bench_train_bisect.py $(ARGS)

layer: $(STAMP) ## build the ask Lambda's serve layer into build/layer, print its size, check it imports alone
	$(PY) scripts/build_layer.py --check

openapi: $(STAMP) ## regenerate functions/api/openapi.json from the pydantic models
	$(PY) -c "import json; from rag_autotune.openapi import openapi_document as d; \
	open('functions/api/openapi.json','w').write(json.dumps(d(), indent=2) + '\n')"

template: $(STAMP) ## cfn-lint template.yaml (SAM source and transformed), write build/template.cfn.json
	$(VENV)/bin/cfn-lint template.yaml
	@mkdir -p build
	$(PY) -c "import json; from rag_autotune.local.cfn import transformed_template as t; \
	open('build/template.cfn.json','w').write(json.dumps(t(), indent=1))"
	$(VENV)/bin/cfn-lint --ignore-checks W3005 W1020 -- build/template.cfn.json

localstack-build: $(STAMP) $(SAM_STAMP) ## LocalStack's community variant of template.yaml, then sam build of it (no Docker needed)
	$(PY) scripts/localstack_build.py --out build/localstack $(ARGS)
	@# sam wants the functions' Python (python3.13) on PATH: build_layer.runtime_python finds one (pyenv too)
	RUNTIME_PY="$$($(PY) -c 'import sys; sys.path.insert(0, "scripts"); import build_layer as b; print(b.runtime_python() or "")')" && \
	env -u PYTHONPATH PATH="$${RUNTIME_PY%/*}:$(CURDIR)/$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build \
	  --template-file build/localstack/template.json --build-dir build/localstack/sam

localstack-up: $(STAMP) ## LocalStack in Docker + samlocal deploy + demo corpus; prints the API URL
	bash localstack/up.sh

localstack-e2e: $(STAMP) ## ask → feedback → tune → ask on LocalStack ("skipped: no Docker" without Docker)
	bash localstack/e2e.sh

localstack-down: ## stop LocalStack
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
	  docker compose -f localstack/docker-compose.yml down; else echo "skipped: no Docker"; fi
	rm -f .localstack.env

clean: ## remove .venv, caches and local state
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .local build .pytest_cache .mypy_cache .ruff_cache
