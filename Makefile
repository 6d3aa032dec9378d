# The two commands a newcomer runs: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KUBO_VERSION ?= v0.42.0
KUBO_CACHE ?= $(HOME)/.cache/hddm-p2p/kubo
KUBO_BIN := $(KUBO_CACHE)/ipfs-$(KUBO_VERSION)
export HDDM_KUBO_BIN ?= $(KUBO_BIN)
CLUSTER_VERSION ?= v1.1.0
CLUSTER_DIR ?= $(HOME)/.cache/hddm-p2p/cluster-$(CLUSTER_VERSION)
export HDDM_CLUSTER_BIN_DIR ?= $(CLUSTER_DIR)
NVCC_CACHE ?= $(HOME)/.cache/hddm-p2p/nvcc-13.0.88
# what the CUDA-source compile test uses (the Hopper kernels; compiling needs no GPU)
export HDDM_TEST_NVCC ?= $(NVCC_CACHE)/nvidia/cu13/bin/nvcc
export HDDM_TEST_CUTLASS_DIR ?= $(NVCC_CACHE)/cutlass_library/source

.PHONY: demo test venv kubo cluster nvcc clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

kubo: $(KUBO_BIN)

$(KUBO_BIN):
	KUBO_VERSION=$(KUBO_VERSION) KUBO_CACHE=$(KUBO_CACHE) bash scripts/install_kubo.sh

cluster: $(CLUSTER_DIR)/.no-natportmap

$(CLUSTER_DIR)/.no-natportmap:
	CLUSTER_VERSION=$(CLUSTER_VERSION) CLUSTER_DIR=$(CLUSTER_DIR) bash scripts/install_ipfs_cluster.sh

nvcc: $(NVCC_CACHE)/.installed

$(NVCC_CACHE)/.installed:
	NVCC_CACHE=$(NVCC_CACHE) bash scripts/install_nvcc.sh
	touch $@

demo: venv
	OMP_NUM_THREADS=2 $(VENV)/bin/hddm demo --out demo-out

# One math thread per process: the suite's models are tiny, and on 2 cores extra threads only contend.
test: venv kubo cluster nvcc
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache
