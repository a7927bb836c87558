# Set-up is part of every target: each creates or reuses .venv and installs what the
# project needs, so a fresh clone needs nothing but `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# On a machine with an NVIDIA GPU, point this at the CUDA build instead.
TORCH_CONSTRAINTS ?= constraints/cpu.txt

.PHONY: install demo demo-image demo-causal-lm test test-fast bench chaos crd deploy clean

install: $(STAMP)

$(STAMP): pyproject.toml $(TORCH_CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r $(TORCH_CONSTRAINTS)
	$(PY) -m pip install -q -c $(TORCH_CONSTRAINTS) -e '.[trainer,demo,test]'
	bash deploy/install-prometheus.sh
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/finetune validate examples/*.yaml
	$(PY) -m finetune_trainer.demo --out data/demo
	$(VENV)/bin/finetune run examples/demo.yaml \
	  --set model.source="$$($(PY) -c 'from finetune_trainer.modeling import minilm_path; print(minilm_path())')"
	$(PY) -m finetune_trainer.demo_baseline --data data/demo --run outputs/support-intents-demo

# Image classification on scikit-learn's digits, written out as an image folder, from
# a small random ViT (no pre-trained vision model installs from PyPI).
demo-image: $(STAMP)
	$(PY) -m finetune_trainer.demo_images --out data/digits --model-out data/digits-vit
	$(VENV)/bin/finetune run examples/local-image-classification.yaml

# Instruction tuning offline: the project writes chat data and a tiny random Llama with
# a tokenizer trained on it (no pre-trained causal LM is installable without a hub).
demo-causal-lm: $(STAMP)
	$(PY) -m finetune_trainer.demo_chat --out data/chat --model-out models/tiny-chat-llama
	$(VENV)/bin/finetune run examples/local-causal-lm.yaml

# The real-server tests (marker `kube`) need kube-apiserver, etcd and
# kube-controller-manager: tests/kube/build.sh builds them once into a cache folder
# outside the checkout (about 5-7 minutes cold on 2 cores) and is a no-op afterwards.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	bin="$$(bash tests/kube/build.sh)" && FINETUNE_KUBE_BIN_DIR="$$bin" $(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not e2e"

bench: $(STAMP)
	bin="$$(bash tests/kube/build.sh)" && FINETUNE_KUBE_BIN_DIR="$$bin" $(PY) -m bench

# Seeded fault loops (operator SIGKILLs, two replicas, API faults) against the real
# kube-apiserver and etcd; prints a table of counts, exits 1 if an invariant broke.
chaos: $(STAMP)
	bin="$$(bash tests/kube/build.sh)" && FINETUNE_KUBE_BIN_DIR="$$bin" $(PY) -m chaos

crd: $(STAMP)
	$(VENV)/bin/finetune crd --write

# Regenerate the chart's RBAC rules, the alert rules and the plain manifests from
# their single sources; tests fail when the committed copies drift.
deploy: $(STAMP)
	$(PY) deploy/generate.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
