# Build and test entry points. Recipes are indented with TABs.
PY ?= python3
VENV ?= .venv

STAMP := $(VENV)/.installed

.PHONY: demo test info clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

# The main job (for now): an end-to-end run of the full-size ViT-B/16 ZegCLIP with random weights.
demo: $(STAMP)
	$(VENV)/bin/python -m zegclip demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

info: $(STAMP)
	$(VENV)/bin/python -m zegclip info --preset voc

clean:
	rm -rf _build build dist .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
