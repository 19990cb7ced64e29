# Two entry points: `make demo` and `make test`. Both install what they need themselves:
# uv from PyPI into .tools/, the locked Python deps into .venv/, and the upstream Kubernetes
# control plane (built from the Go module proxy into ~/.cache/fireproof, once).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
FIREPROOF := $(VENV)/bin/fireproof
PYTEST_ARGS ?=
# Lab tests mostly wait on timers: independent labs side by side (one per worker, tests handed
# out one by one; files with a costly module fixture stay on one worker: tests/conftest.py's
# ONE_WORKER, through `--dist loadgroup`) cut the wall time. How many: scripts/workers.py's rule,
# two labs per usable core (taskset, cgroup quota), at most one per 3 GiB available: 4 on 2 cores,
# 2 on one.
PYTEST_WORKERS ?= $(shell $(PYTHON) scripts/workers.py)
# The per-phase record `make test` prints at its end (scripts/phases.py).
export FIREPROOF_PHASES := $(CURDIR)/.test-phases.tsv
TIMED = $(VENV)/bin/python scripts/phases.py time

.PHONY: all venv k8s k8s-1.36 k8s-all prepare system-deps lint test test-unit test-lab test-builds demo bench plugin image image-run clean help

help:
	@echo "make demo   run the lab demo (installs everything it needs)"
	@echo "make test   lint, type-check and run every test (unit, integration, e2e)"
	@echo "make bench  run the benchmarks (several hours at upstream timings; prints figures)"
	@echo "make plugin the single-binary kubectl plugin and its krew archive and manifest (dist/krew/)"
	@echo "make image  the OCI image from Debian packages and the wheel (dist/image/), its digest, size, SBOM"
	@echo "make image-run ARGS='doctor --kubeconfig ...'  run it (runc: host network, UID 65532, read-only root)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# chaosfireproof is installed, not editable (chaoslib finds it through its file list): a change
# to its sources syncs again, and uv rebuilds it (its cache-keys name them).
$(VENV)/.synced: $(UV) uv.lock pyproject.toml chaosfireproof/pyproject.toml $(wildcard chaosfireproof/src/chaosfireproof/*.py)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet
	touch $@

venv: $(VENV)/.synced

k8s: venv
	$(FIREPROOF) lab build

# v1.36 is the last release whose attach/detach controller says `Multi-Attach error`; one
# integration test reproduces the incident's exact event text on it. Only its
# kube-controller-manager is built (it runs beside v1.37's API server, within the version skew
# policy): a fraction of a second full Kubernetes build in every cold run.
k8s-1.36: venv
	$(FIREPROOF) lab build --kubernetes 1.36

# ClusterLabs fence agents (fence_pve) from Debian: the real client our emulator must satisfy.
# Debian packages the tests drive for real: ClusterLabs fence_pve, and chromium (headless) to
# render the drill's HTML report.
system-deps:
	@{ command -v fence_pve && command -v ipmitool && command -v chromium && command -v promtool \
	  && command -v mmdebstrap && command -v umoci && command -v runc; } >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    fence-agents ipmitool chromium prometheus mmdebstrap umoci runc >/dev/null; }

lint: venv
	$(VENV)/bin/ruff check src chaosfireproof/src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src chaosfireproof/src tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python scripts/lint_clock_verdicts.py tests

# Both Go builds side by side, with lint and the Debian packages. The compile is CPU-bound, so
# this is about as fast as one after the other (cold: 584 s and 651 s side by side, against
# 380 s then 248 s), and the downloads and links of one overlap the other's compile. Their lines
# interleave, each whole (output-sync would hold the builds' progress until they end).
k8s-all: venv
	$(MAKE) -j2 k8s k8s-1.36

# The builds tests share, each cached by its sources' hash and made once per change: the image
# (default and with fence-agents) and the single-binary plugin. Made here, beside the Go builds,
# so that no test waits on one (they were 12 min of test time on a slow machine).
test-builds: venv system-deps
	$(VENV)/bin/python scripts/image.py build --cached --warm
	$(VENV)/bin/python scripts/image.py build --cached --warm --fence-agents
	$(VENV)/bin/python scripts/plugin.py

timed-%: venv
	+@$(TIMED) $* -- $(MAKE) --no-print-directory $*

prepare: venv
	@rm -f $(FIREPROOF_PHASES)
	$(MAKE) -j4 timed-lint timed-k8s timed-k8s-1.36 timed-test-builds

# pytest exits 5 when it collected no test: that is a failure here, never a pass. The summary
# of where the time went is printed whatever the outcome.
test: prepare
	@$(PYTHON) scripts/workers.py --explain >/dev/null
	$(TIMED) tests -- $(VENV)/bin/pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS) tests; rc=$$?; \
	  $(VENV)/bin/python scripts/phases.py summary; \
	  if [ $$rc -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi; exit $$rc

test-unit: venv
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

demo: k8s
	bash scripts/demo.sh

# One executable (PyInstaller), its krew archive and manifest, in dist/krew/; cached by the
# sources' hash outside the repository (about 50 s cold on 2 cores, instant warm).
plugin: venv
	$(VENV)/bin/python scripts/plugin.py

# The image, built afresh each time from Debian bookworm (mmdebstrap) and the wheel, no base
# image pulled; SOURCE_DATE_EPOCH (default: the last commit's time) makes two builds one digest.
# FENCE_AGENTS=1 adds Debian's fence-agents.
IMAGE_FLAGS := $(if $(FENCE_AGENTS),--fence-agents,)
image: venv system-deps
	$(VENV)/bin/python scripts/image.py build $(IMAGE_FLAGS)

# Paths the arguments name are mounted read-only at the same place: MOUNT=/path/to/dir.
image-run: venv
	$(VENV)/bin/python scripts/image.py run $(foreach m,$(MOUNT),--mount $(m)) -- $(ARGS)

bench: k8s
	$(VENV)/bin/python benchmarks/heartbeats.py
	$(VENV)/bin/python benchmarks/real_profile_timeline.py
	$(VENV)/bin/python benchmarks/heal_vs_waiting.py real
	$(VENV)/bin/python benchmarks/guard_vs_peers.py --runs 10
	$(VENV)/bin/python benchmarks/doctor_scale.py 500 10000
	$(VENV)/bin/python benchmarks/host_failure.py --runs 10
	$(VENV)/bin/python benchmarks/startup.py
	$(VENV)/bin/python benchmarks/guard_failover.py --runs 3 --profile real
	$(VENV)/bin/python benchmarks/fault_campaign.py --runs 330 --seed 1001 --profile fast
	$(VENV)/bin/python benchmarks/fault_campaign.py --runs 34 --seed 3003 --profile real

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
