# namtech.internal_ai: the README's two commands are `make demo` and `make test`.
# Both bootstrap what they need on a fresh Debian 12 machine as root: the Debian packages, a virtualenv
# at .venv from the pinned requirements, and the collection placed where Ansible looks for it.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := .build
# Ansible finds the collection through this link; ansible-test needs a real copy (see `sanity`).
COLLECTION_LINK := $(BUILD)/ansible_collections/namtech/internal_ai
SANITY_TREE := $(BUILD)/sanity/ansible_collections/namtech/internal_ai
TOPOLOGY ?= cluster
ENGINE ?= ollama

export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(BUILD)
export PYTHONPATH := $(CURDIR)/tests:$(CURDIR)/bench:$(CURDIR)/$(BUILD)
export ANSIBLE_NOCOLOR := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# postgresql-15: pg_dump/pg_restore and throwaway test clusters (no main cluster is created, see below);
# chromium: renders the TCO report headless in a test; nodejs and npm (by command: some nodejs builds bundle it):
# the lab storage host's S3 test server (s3rver).
DEBIAN_PACKAGES := python3-venv git openssl shellcheck haproxy prometheus prometheus-alertmanager podman runc debootstrap netavark aardvark-dns iptables e2fsprogs \
	iproute2 openssh-client postgresql-15 chromium nftables systemd-journal-remote nodejs

.PHONY: help bootstrap debian-packages venv collection-link test lint ruff ansible-lint sanity argspec unit \
	integration demo build lab-up lab-down lab-status requirements clean bench-lb bench-failover bench-rollout bench-backup \
	bench-exporter-cost

help:
	@echo "make demo       the main job: a lab AI cluster deployed, with a summary (TOPOLOGY=box|pro|cluster)"
	@echo "make test       every test, in CI's order: ruff, ansible-lint, sanity, argument specs, unit, integration"
	@echo "make lint       ruff and ansible-lint only"
	@echo "make unit       pytest tests/unit"
	@echo "make lab-up     start the lab (TOPOLOGY=$(TOPOLOGY) ENGINE=$(ENGINE)); make lab-status, make lab-down"
	@echo "make build      the collection tarball"
	@echo "make bench-lb   latency through the LB vs direct; make bench-failover: VIP failover (deployed lab)"
	@echo "make bench-rollout  model rollout under load: failed requests, latency, time vs naive, recovery (deployed lab)"
	@echo "make bench-exporter-cost  llm_exporter's scrape duration vs node_exporter, its canary's load (deployed lab)"

bootstrap: debian-packages venv collection-link

debian-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "== installing Debian packages:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install: $$missing" >&2; exit 1; fi; \
		mkdir -p /etc/postgresql-common/createcluster.d; \
		[ -e /etc/postgresql-common/createcluster.d/namtech.conf ] || [ -d /etc/postgresql/15/main ] || \
			echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/namtech.conf; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/dev.txt
	@echo "== virtualenv $(VENV) from requirements/dev.txt"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@touch $@

collection-link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn $(CURDIR) $(COLLECTION_LINK)

requirements: venv
	$(BIN)/pip install --quiet -r requirements/dev.in
	{ echo '# Pinned by `make requirements` from dev.in: the exact versions `make test` and CI install.'; \
	  $(BIN)/pip freeze --exclude-editable; } > requirements/dev.txt

test: bootstrap ruff ansible-lint sanity argspec unit integration

lint: bootstrap ruff ansible-lint

ruff: venv
	@echo "== ruff"
	$(BIN)/ruff check .

ansible-lint: venv collection-link
	@echo "== ansible-lint --profile production"
	$(BIN)/ansible-lint --profile production

# ansible-test wants the collection at ansible_collections/NAMESPACE/NAME and does not follow links,
# so it runs on a copy of the files git would ship (tracked and new, not ignored), in a repository of its own.
sanity: venv
	@$(BIN)/python tests/tools/provide_ansible_test_get_pip.py
	@echo "== ansible-test sanity (Python 3.11, local)"
	@rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	@git ls-files -z --cached --others --exclude-standard \
		| tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -C $(SANITY_TREE) -xf -
	@cd $(SANITY_TREE) && git init -q && git add -A  # its own repository, or ansible-test sees the parent's ignore rules
	cd $(SANITY_TREE) && $(CURDIR)/$(BIN)/ansible-test sanity --python 3.11 --local --color no

argspec: venv
	@echo "== role argument specs match role defaults"
	$(BIN)/python tests/tools/check_argument_specs.py roles

unit: venv collection-link
	@echo "== pytest tests/unit"
	$(BIN)/pytest tests/unit

integration: venv collection-link debian-packages
	@echo "== pytest tests/integration (the lab)"
	# A test's lab fixtures run playbooks (site.yml, the storage host) that take minutes on 2 cores.
	$(BIN)/pytest tests/integration -p no:cacheprovider -rs --timeout 1800

build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)

lab-up: bootstrap
	$(BIN)/python -m lab up --topology $(TOPOLOGY) --engine $(ENGINE)

lab-down: venv
	$(BIN)/python -m lab down

lab-status: venv
	$(BIN)/python -m lab status

demo: bootstrap
	$(BIN)/python tests/demo.py --topology $(TOPOLOGY) --engine $(ENGINE)

# Benchmarks (not tests): each needs a deployed lab and appends its figures to docs/benchmarks.md.
bench-lb: venv
	$(BIN)/python bench/lb_overhead.py

bench-failover: venv
	$(BIN)/python bench/lb_failover.py

bench-rollout: venv collection-link
	$(BIN)/python bench/rollout.py

bench-backup: venv collection-link
	$(BIN)/python bench/backup.py

bench-exporter-cost: venv collection-link
	$(BIN)/python bench/exporter_cost.py

clean:
	rm -rf $(BUILD) tests/output .pytest_cache .ruff_cache
