# One-command set-up over a local .venv. On Windows use the plain pip commands in README.md.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# torch first, so pip does not pull a multi-GB CUDA build. For the small CPU-only wheel from PyTorch's own index:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=

.PHONY: setup run demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@

run: setup  ## camera + microphone -> OSC 127.0.0.1:7000 and ws://127.0.0.1:9980
	$(BIN)/emotion-bridge run $(ARGS)

demo: setup  ## no camera or microphone needed: a real face video and spoken audio made locally
	$(BIN)/python -m bridge.demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

bench: setup
	$(BIN)/emotion-bridge bench --quick $(ARGS)

clean:
	rm -rf $(VENV) .cache artifacts build *.egg-info
