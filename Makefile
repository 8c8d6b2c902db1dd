# Build and test entry points. Recipes are indented with TABs.
PY ?= python3
VENV ?= .venv

STAMP := $(VENV)/.installed

.PHONY: install reproduce demo test info clean book gpu-check

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

# Install only (the first step of every target below): .venv/ with the package, its notebook/book and test extras.
install: $(STAMP)

# The main job: every run that the paper's tables and figures need, in the mini world on this CPU (the registry
# notebooks/registry.yaml, executed with papermill; finished runs are skipped), their table/figure notebooks, then
# the book. PROFILE=paper reruns the paper's setting on GPUs (real data and CLIP weights needed).
PROFILE ?= mini
JOBS ?= 2
reproduce: $(STAMP)
	$(VENV)/bin/python -m zegclip reproduce --profile $(PROFILE) --jobs $(JOBS)
	$(MAKE) --no-print-directory book

# An end-to-end run of the full-size ViT-B/16 ZegCLIP with random weights (shapes, parameter counts, timing).
demo: $(STAMP)
	$(VENV)/bin/python -m zegclip demo

# The GPU check (about 5 minutes on one H100 once the mini-CLIP is cached): ViT-B/16 ZegCLIP at 512², batch 16,
# bf16, eager and torch.compile (latency, throughput, training step, peak memory) and one mini-world run on the GPU.
gpu-check: $(STAMP)
	$(VENV)/bin/python -m zegclip bench --gpu-report --profile $(PROFILE)

# tests/test_book.py opens the built book in headless Chromium: Debian's package, installed here when missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser test of the book"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "NOTE: tests/test_book.py needs chromium; run 'sudo apt-get install -y chromium' (skipped without it, fails under CI)"; \
	fi

# PYTEST_ARGS selects a part, e.g. PYTEST_ARGS='-m "not slow"' (.github/workflows/tests.yml runs the two halves).
PYTEST_ARGS ?=
test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# The book (Jupyter Book 1.x, MathJax served locally) from the executed notebooks in book/generated/; in a fresh
# clone they are executed first from the committed results (no run is recomputed; the walkthrough pretrains the
# mini-CLIP once when it is not cached). .github/workflows/book.yml publishes this.
BOOK_OUT ?= .
book: $(STAMP)
	test -f book/generated/summary.md || $(VENV)/bin/python -m zegclip reproduce --profile $(PROFILE) --reports-only
	$(VENV)/bin/jupyter-book build . --warningiserror --path-output $(BOOK_OUT)
	@echo "book: $(abspath $(BOOK_OUT))/_build/html/index.html"

info: $(STAMP)
	$(VENV)/bin/python -m zegclip info --preset voc

clean:
	rm -rf _build build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
