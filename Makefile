# keyvault-agent: build, test, package.   `make` (or `make help`) lists the targets.
#
# `make test` is the CI entry point (.ci/run): on a fresh Debian machine, as root, it installs what
# it needs (apt: podman, runc, busybox-static, ...; Python venvs from pinned requirements files)
# and runs every suite. Installs are skipped when already present.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
IMAGE_TAG ?= dev
AGENT_IMAGE ?= localhost/keyvault-agent:$(IMAGE_TAG)
EMULATOR_IMAGE ?= localhost/keyvault-emulator:$(IMAGE_TAG)
DEMO_IMAGE ?= localhost/keyvault-demo-app:$(IMAGE_TAG)
# Only addresses on loopback: the emulator's default, spelled out.
EMULATOR_ADDR ?= 127.0.0.1:8443
EMULATOR_STATE ?= build/emulator-state
SEED ?= emulator/examples/seed.yaml
# Podman settings that work on these machines (runc, cgroupfs, k8s-file logs): a copy of
# this machine's containers.conf, kept in the repository so a fresh clone has it.
export CONTAINERS_CONF ?= $(CURDIR)/tests/e2e/containers.conf
# Container engine of `make image`, `compose-*`: podman or docker (scripts/docker-engine.sh
# starts a private dockerd when no Docker daemon answers).
ENGINE ?= podman
export IMAGE_TAG AGENT_IMAGE EMULATOR_IMAGE DEMO_IMAGE ENGINE

E2E_VENV := build/venv-e2e
# ENGINE=docker: a Docker daemon (the running one, else a private dockerd left running for the
# next target; `make docker-stop` ends it) and Compose v2, for the recipe's command.
ifeq ($(ENGINE),docker)
WITH_ENGINE = eval "$$(bash scripts/docker-engine.sh start)" &&
endif
KUBERNETES_VERSIONS ?= 1.30.0 1.34.0

.PHONY: help
help: ## list the targets
	@echo "keyvault-agent: make TARGET"
	@grep -hE '^[a-z][a-zA-Z0-9_-]*:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-20s %s\n", $$1, $$2}'

.PHONY: build
build: ## debug build of the agent and the emulator (scripts/build.sh: the build every target shares)
	CARGO=$(CARGO) bash scripts/build.sh debug

.PHONY: fmt
fmt: ## format the Rust code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## check formatting (what CI runs)
	$(CARGO) fmt --all -- --check

.PHONY: lint
lint: ## clippy with warnings as errors, all targets
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: doc
doc: ## API docs of both crates, warnings (broken intra-doc links...) as errors
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --locked

.PHONY: deny
deny: ## dependency policy (deny.toml): licences, bans, sources, advisories from the snapshot
	CARGO=$(CARGO) bash scripts/deny.sh

.PHONY: cargo-test
cargo-test: ## the Rust test suites of both crates
	$(CARGO) test --workspace --locked

.PHONY: doc-check
doc-check: ## docs/ citations exist; README flags table and quoted errors match --help and the agent
	$(CARGO) test --workspace --locked --test tests -- docs::

.PHONY: arch-check
arch-check: ## fail on a module cycle, or a module named like a dependency or std module (agent/tests/arch.rs, emulator/tests/arch.rs)
	$(CARGO) test -p keyvault-agent --locked --test arch
	$(CARGO) test -p keyvault-emulator --locked --test tests arch::

.PHONY: sdk-test
sdk-test: ## the emulator driven by the official Azure SDK for Python (tests/sdk)
	bash tests/sdk/run.sh

.PHONY: sdk-node-test
sdk-node-test: ## the emulator driven by the official Azure SDKs for JavaScript (tests/sdk-node; npm ci)
	bash tests/sdk-node/run.sh

.PHONY: deps
deps: ## install system packages and Python venvs needed by the tests (idempotent)
	bash scripts/install-deps.sh
	bash scripts/venv.sh $(E2E_VENV) tests/e2e/requirements.txt

.PHONY: test
test: ## CI: install deps, fmt, the demo, clippy, arch-check, doc, deny, cargo test, SDK suites (Python, Node), manifests, e2e, compose (podman, docker)
	$(MAKE) deps
	$(MAKE) fmt-check
	# The README's first command, as a new user runs it; its build is the one the tests reuse.
	$(MAKE) demo
	$(MAKE) doc-check
	$(MAKE) lint
	$(MAKE) arch-check
	$(MAKE) doc
	$(MAKE) deny
	$(MAKE) cargo-test
	$(MAKE) sdk-test
	$(MAKE) sdk-node-test
	$(MAKE) validate-manifests
	$(MAKE) e2e
	$(MAKE) compose-test ENGINE=podman
	$(MAKE) compose-test ENGINE=docker

.PHONY: demo
demo: ## emulator + agent --once against the example seed; prints what was written
	bash scripts/demo.sh

.PHONY: emulator
emulator: ## run the emulator in the foreground with the example seed (Ctrl-C to stop; reuses make demo's build)
	bin="$$(CARGO=$(CARGO) bash scripts/build.sh debug)" && exec "$$bin/keyvault-emulator" serve \
	  --addr $(EMULATOR_ADDR) --state-dir $(EMULATOR_STATE) --seed $(SEED)

.PHONY: image
image: ## static release binaries, then the agent, emulator and demo images (ENGINE=podman|docker)
	$(WITH_ENGINE) bash scripts/build-images.sh $(IMAGE_TAG)

.PHONY: render-manifests
render-manifests: ## render every kustomize overlay into build/manifests/
	bash scripts/render-manifests.sh build/manifests

.PHONY: validate-manifests
validate-manifests: ## render every overlay, and migrate's output on the CSI fixtures, and validate them offline against Kubernetes schemas
	bash scripts/venv.sh $(E2E_VENV) tests/e2e/requirements.txt
	bash scripts/render-manifests.sh build/manifests
	$(E2E_VENV)/bin/python -m pytest -q tests/e2e/test_manifests.py
	for v in $(KUBERNETES_VERSIONS); do \
	  $(E2E_VENV)/bin/kubernetes-validate --strict --quiet -k $$v build/manifests/*.yaml; \
	  echo "validate-manifests: build/manifests/*.yaml valid for Kubernetes $$v"; \
	done
	# `keyvault-agent migrate` on the reference repositories' examples, in every --mode.
	bash scripts/render-migrated.sh build/manifests-migrated
	for v in $(KUBERNETES_VERSIONS); do \
	  $(E2E_VENV)/bin/kubernetes-validate --strict --quiet -k $$v build/manifests-migrated/*.yaml; \
	  echo "validate-manifests: build/manifests-migrated/*.yaml valid for Kubernetes $$v"; \
	done

.PHONY: e2e
e2e: ## images and pods (podman kube play) against the emulator, on loopback (compose: compose-test)
	bash tests/e2e/run.sh

.PHONY: bench
bench: ## performance figures against the emulator (bench/run.sh)
	bash bench/run.sh

.PHONY: fleet
fleet: ## fleet simulation: 200 sidecars x 50 secrets against one throttling emulator, list vs get detection
	bash bench/fleet.sh $(FLEET_ARGS)

.PHONY: bench-config
bench-config: ## config parser limits: time to accept or refuse hostile and large inputs
	$(CARGO) run --release --locked -p keyvault-agent --example config_limits

.PHONY: compose-up
compose-up: image ## images, then emulator + agent (sidecar) + demo app (ENGINE=podman|docker)
	$(WITH_ENGINE) bash scripts/compose.sh up

.PHONY: compose-down
compose-down: ## stop and remove the compose project (ENGINE=podman|docker)
	$(WITH_ENGINE) bash scripts/compose.sh down

.PHONY: compose-test
compose-test: ## compose end to end from a clean state: up, secrets, rotation, down (ENGINE=podman|docker)
	bash tests/e2e/compose-test.sh

.PHONY: docker-stop
docker-stop: ## stop the private dockerd that ENGINE=docker targets started (scripts/docker-engine.sh)
	bash scripts/docker-engine.sh stop
