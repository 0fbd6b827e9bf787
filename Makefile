# pgsteady — run `make help` for the targets.
INVENTORY ?= inventory/local.py
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYINFRA := $(BIN)/pyinfra -y
PYTEST := $(BIN)/pytest
PYTEST_ARGS ?=

.PHONY: help deploy dry-run down test test-unit test-integration test-e2e lint verify \
	status monitor chaos bench backup restore restore-pitr restore-pitr-clean restore-drill clean-venv host-deps update-image upgrade-major lock \
	lab lab-down lab-chaos lab-cluster-chaos lab-cluster-backups lab-cluster-image-roll lab-cluster-remove lab-cluster-grow settings-docs ci scrape-config switchover reinit \
	remove-member

help:
	@echo "make deploy   [INVENTORY=inventory/local.py]  converge the inventory's hosts"
	@echo "make update-image [INVENTORY=...]             rebuild/pull the image (security and"
	@echo "                                              minor updates), roll the container"
	@echo "make upgrade-major [INVENTORY=...]            major upgrade the inventory asks for"
	@echo "                                              (docs/operations.md, Major version upgrade)"
	@echo "make dry-run  [INVENTORY=...]                 show what deploy would change"
	@echo "make down     [INVENTORY=...]                 stop Postgres, keep the data"
	@echo "make verify   [INVENTORY=...] [JUNIT=file]    production-readiness checks"
	@echo "make ci       INVENTORY=... [JUNIT=file] [ALLOW_NEW_STATE=1]  pipelines: check, dry"
	@echo "                                              run, deploy, verify (docs/ci.md)"
	@echo "make status   [INVENTORY=...] [JSON=1] [PERF=1] dashboard (PERF: top statements); make monitor = live"
	@echo "make switchover [TO=host] | reinit HOST=...   cluster: move the leader | rebuild a"
	@echo "                                              replica (INVENTORY=, ACCESS=: docs/operations.md)"
	@echo "make remove-member HOST=... [GONE=1]          cluster: stop a member for good before deleting"
	@echo "                                              it from the inventory (docs/operations.md)"
	@echo "make scrape-config [INVENTORY=...] [OUT=dir]  Prometheus targets, client cert,"
	@echo "                                              scrape_configs (docs/monitoring.md)"
	@echo "make backup | restore-drill                   back up now | prove the newest restores"
	@echo "make restore  [HOST=] [BACKUP=latest|FILE] [TARGET_DB=] [FORCE=1]"
	@echo "make restore-pitr TARGET_TIME='YYYY-MM-DD HH:MM:SS+00'|latest [HOST=] [IN_PLACE=1]"
	@echo "make restore-pitr-clean [HOST=]               remove the side-by-side restore"
	@echo "make test                                     set up this machine and run every test"
	@echo "make chaos | bench                            fault injection | measurements"
	@echo "make lint                                     ruff check + format check"
	@echo "make lab [N=3] [OS=bookworm|trixie] [BACKUP_HOST=1] [CLUSTER=1]  hosts with systemd+sshd ->"
	@echo "                                              inventory/lab.py (last host: backup)"
	@echo "make lab-down | lab-chaos                     remove the lab | measure host reboots"
	@echo "make lab-cluster-chaos [KIND=all] [TRIALS=10] [TIMING=default] [MODE=sync]  failover matrix"

# The virtualenv, rebuilt when the locked dependencies change. Every file pip installs is
# checked against the sha256 hashes in requirements/ (pip and setuptools first, then the
# runtime and test dependencies); pgsteady itself goes in last, without dependencies and
# built with the pinned setuptools. After editing pyproject.toml: make lock.
$(STAMP): pyproject.toml requirements/bootstrap.txt requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements/bootstrap.txt
	$(BIN)/pip install -q --require-hashes -r requirements/lock.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The Patroni the integration tests' process harness runs (tests/support/patroni_lab.py),
# in a test-only virtualenv of its own, hash-checked like the one above: 4.0.7, as the
# product's trixie image (bookworm's Debian 3.0.2 has the etcd3 split-brain defect,
# docs/reliability.md). Built on the system Python, which the postgres user can run.
PATRONI_VENV := .venv-patroni
PATRONI_STAMP := $(PATRONI_VENV)/.installed
PATRONI_PYTHON ?= /usr/bin/python3
$(PATRONI_STAMP): requirements/bootstrap.txt requirements/patroni.txt | host-deps
	test -x $(PATRONI_VENV)/bin/python || $(PATRONI_PYTHON) -m venv $(PATRONI_VENV)
	$(PATRONI_VENV)/bin/pip install -q --require-hashes -r requirements/bootstrap.txt
	$(PATRONI_VENV)/bin/pip install -q --require-hashes --no-build-isolation \
		-r requirements/patroni.txt
	touch $@

# Re-pin requirements/*.txt with hashes (pip-tools in a throw-away virtualenv; pins
# already in the files are kept unless pyproject.toml asks for another version).
PIP_TOOLS_VENV := $(or $(TMPDIR),/tmp)/pgsteady-pip-tools
lock:
	test -x $(PIP_TOOLS_VENV)/bin/pip-compile || \
		($(PYTHON) -m venv $(PIP_TOOLS_VENV) && $(PIP_TOOLS_VENV)/bin/pip install -q pip-tools==7.6.2)
	$(PIP_TOOLS_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		-o requirements/bootstrap.txt requirements/bootstrap.in
	$(PIP_TOOLS_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --extra test \
		-o requirements/lock.txt pyproject.toml
	$(PIP_TOOLS_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		-o requirements/patroni.txt requirements/patroni.in

deploy: $(STAMP)
	$(PYINFRA) $(INVENTORY) deploy.py

# A deploy that rebuilds the Debian image from the current signed packages (or pulls the
# registry tag again); the container is recreated only if the image changed.
update-image: $(STAMP)
	$(PYINFRA) $(INVENTORY) deploy.py --data pgsteady_refresh_image=1

# A deploy: hosts whose inventory sets postgres_upgrade_from_volume (and a new
# postgres_data_volume) are upgraded; the others converge as usual.
upgrade-major: deploy

dry-run: $(STAMP)
	$(BIN)/pyinfra --dry $(INVENTORY) deploy.py </dev/null

down: $(STAMP)
	$(PYINFRA) $(INVENTORY) deploys/down.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# group_data/all.py and docs/settings.md from pgsteady/settings.py (a unit test fails when
# they are stale).
settings-docs: $(STAMP)
	$(BIN)/python -m pgsteady.settings_doc

# System packages and daemons the integration and e2e tests use for real.
host-deps:
	sh scripts/ensure-test-host

# Three pytest sessions side by side (scripts/run_tests.py): unit+integration, e2e, chaos+lab.
test: $(STAMP) host-deps $(PATRONI_STAMP) lint
	$(BIN)/python scripts/run_tests.py $(PYTEST) $(PYTEST_ARGS)

# The production-readiness suite (testinfra) against every host of INVENTORY.
verify: $(STAMP)
	$(BIN)/python -m pgsteady.verify --inventory $(INVENTORY) $(if $(JUNIT),--junit $(JUNIT))

# Prometheus's file_sd targets, client certificate and scrape_configs for INVENTORY's
# exporters (default OUT: .pgsteady/<inventory>/prometheus beside the inventory's CA).
scrape-config: $(STAMP)
	$(BIN)/python -m pgsteady.scrape_config --inventory $(INVENTORY) $(if $(OUT),--out $(OUT))

# For pipelines (docs/ci.md): SSH and settings checks, pyinfra --dry, the converge and
# verify, one exit status; the failing stage is named last and in the JUnit file.
ci: $(STAMP)
	$(BIN)/python -m pgsteady.ci --inventory $(INVENTORY) $(if $(JUNIT),--junit $(JUNIT)) \
		$(if $(ALLOW_NEW_STATE),--allow-new-state) </dev/null

status: $(STAMP)
	$(BIN)/python -m pgsteady.monitor --inventory $(INVENTORY) $(if $(JSON),--json) \
		$(if $(PERF),--performance)

monitor: $(STAMP)
	$(BIN)/python -m pgsteady.monitor --inventory $(INVENTORY) --live

# Cluster operations through Patroni's REST API (docs/operations.md, Patroni cluster):
# the inventory's members through ssh port forwards (or MEMBERS="pg1=https://... ..."),
# ACCESS=dir with ca.crt, client.crt, client.key, rest-password (0600; default: beside
# the inventory's CA, cluster-access/), CLUSTER= when the inventory has several.
CLUSTER_OP = $(BIN)/python -m pgsteady $(1) \
	$(if $(MEMBERS),$(foreach m,$(MEMBERS),--member $(m)),--inventory $(INVENTORY)) \
	$(if $(ACCESS),--access $(ACCESS)) $(if $(CLUSTER),--cluster $(CLUSTER)) \
	$(if $(MAX_LAG),--max-lag $(MAX_LAG))
switchover: $(STAMP)
	$(call CLUSTER_OP,switchover) $(if $(TO),--to $(TO))

reinit: $(STAMP)
	$(if $(HOST),,$(error make reinit needs HOST=<the replica to rebuild>))
	$(call CLUSTER_OP,reinit) $(HOST)

# Take a member out of its cluster for good (then delete it from the inventory, make deploy).
remove-member: $(STAMP)
	$(if $(HOST),,$(error make remove-member needs HOST=<the member to remove>))
	$(call CLUSTER_OP,remove-member) $(HOST) $(if $(GONE),--gone)

# Backups on the inventory's hosts (HOST= limits to one host). The tool's output is shown.
SHOW_OUTPUT := -vvv
backup: $(STAMP)
	$(PYINFRA) $(SHOW_OUTPUT) $(if $(HOST),--limit $(HOST)) $(INVENTORY) deploys/backup.py

restore: $(STAMP)
	$(PYINFRA) $(SHOW_OUTPUT) $(if $(HOST),--limit $(HOST)) $(INVENTORY) deploys/restore.py \
		--data pgsteady_backup=$(or $(BACKUP),latest) \
		$(if $(TARGET_DB),--data pgsteady_target_db=$(TARGET_DB)) \
		$(if $(FORCE),--data pgsteady_force=$(FORCE)) $(if $(JOBS),--data pgsteady_jobs=$(JOBS))

# Point-in-time recovery from pgBackRest (TARGET_TIME='2026-01-31 14:59:00+00' or latest):
# side by side on a free port by default; IN_PLACE=1 replaces the live cluster.
restore-pitr: $(STAMP)
	$(PYINFRA) $(SHOW_OUTPUT) $(if $(HOST),--limit $(HOST)) $(INVENTORY) deploys/restore_pitr.py \
		--data "pgsteady_target_time=$(TARGET_TIME)" $(if $(IN_PLACE),--data pgsteady_in_place=$(IN_PLACE))

restore-pitr-clean: $(STAMP)
	$(PYINFRA) $(SHOW_OUTPUT) $(if $(HOST),--limit $(HOST)) $(INVENTORY) deploys/restore_pitr.py \
		--data pgsteady_clean=1

restore-drill: $(STAMP)
	$(PYINFRA) $(SHOW_OUTPUT) $(if $(HOST),--limit $(HOST)) $(INVENTORY) deploys/restore_drill.py

# Long fault-injection runs; a CI-sized subset runs inside `make test`.
chaos: $(STAMP) host-deps $(PATRONI_STAMP)
	PGSTEADY_CHAOS=full $(PYTEST) -q -s tests/chaos $(PYTEST_ARGS)

bench: $(STAMP) host-deps $(PATRONI_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# A lab of host containers (systemd, sshd, own IP and disk) reached over SSH; see docs/lab.md.
N ?= 3
OS ?= bookworm
LAB_NAME ?= pgsteady-lab
LAB_INVENTORY := inventory/lab.py
lab: $(STAMP)
	$(BIN)/python -m pgsteady.lab up --name $(LAB_NAME) -n $(N) --os $(OS) \
		--inventory $(LAB_INVENTORY) $(if $(IMAGE_SOURCE),--image-source $(IMAGE_SOURCE)) \
		$(if $(BACKUP_HOST),--backup-host) $(if $(CLUSTER),--cluster lab)

lab-down: $(STAMP)
	$(BIN)/python -m pgsteady.lab down --name $(LAB_NAME) --inventory $(LAB_INVENTORY)

# Host reboots and power losses, measured on a lab of its own (3 of each).
lab-chaos: $(STAMP) host-deps
	PGSTEADY_CHAOS=full $(PYTEST) -q -s tests/lab $(PYTEST_ARGS)

# A cluster's backups on a lab of its own (3 members + 1 backup host, ~25 min): stanza,
# standby backup, archiving across a switchover, PITR after it, reinit from pgBackRest.
lab-cluster-backups: $(STAMP) host-deps
	PGSTEADY_LAB_BACKUPS=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_backups.py $(PYTEST_ARGS)

# Issue 15's fault matrix on a 3-host lab cluster of its own (bench part failover_lab):
# KIND=all or a comma list, TRIALS rounds, TIMING=default|tight, MODE=sync|async;
# LAB_INVENTORY_IN=<an already deployed lab inventory> skips building one.
KIND ?= all
TRIALS ?= 10
TIMING ?= default
MODE ?= sync
lab-cluster-chaos: $(STAMP) host-deps
	$(BIN)/python -m bench --only failover_lab --failover-lab-kinds $(KIND) \
		--failover-lab-trials $(TRIALS) --failover-lab-profile $(TIMING) \
		--failover-lab-mode $(MODE) $(if $(LAB_INVENTORY_IN),--failover-lab-inventory \
		$(LAB_INVENTORY_IN)) $(if $(CHAOS_LAB),--failover-lab-name $(CHAOS_LAB)) $(BENCH_ARGS)

# A minor image roll on a lab cluster of its own (two rolls, ~24 min with the lab's build):
# every member's container recreated replicas first, one switchover, the write gap
# recorded; then a zero-change deploy, make verify, a HAProxy reload, the switchover refusal.
lab-cluster-image-roll: $(STAMP) host-deps
	PGSTEADY_LAB_IMAGE_ROLL=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_image_roll.py $(PYTEST_ARGS)

# A 5-member cluster on a lab of its own (~20 min): bootstrap, then a dead and a live
# member removed under a writer (make remove-member, inventory, deploy), gaps recorded.
lab-cluster-remove: $(STAMP) host-deps
	PGSTEADY_LAB_REMOVE=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_remove_member.py $(PYTEST_ARGS)

# Metrics in a 3-member cluster on a lab of its own (11 min at load 14-17): a real
# Prometheus scrapes every member's exporters, a stopped replica fires
# PostgresReplicaNotStreaming.
.PHONY: lab-cluster-metrics
lab-cluster-metrics: $(STAMP) host-deps
	PGSTEADY_LAB_METRICS=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_metrics.py $(PYTEST_ARGS)

# PgBouncer on every member of a lab cluster of its own: writes through one member's pooler
# across a switchover, make verify's pooler checks (docs/operations.md, about 20 min).
.PHONY: lab-cluster-pooler
lab-cluster-pooler: $(STAMP) host-deps
	PGSTEADY_LAB_POOLER=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_pooler.py $(PYTEST_ARGS)

# Before the first cluster deploy of a running single host (its first member): copy its
# passwords into the cluster's secrets on this machine (never printed; docs/operations.md).
.PHONY: cluster-adopt
cluster-adopt: $(STAMP)
	$(if $(HOST),,$(error make cluster-adopt needs HOST=<the single host, first of its cluster group>))
	$(PYINFRA) --limit $(HOST) $(INVENTORY) deploys/cluster_adopt.py

# A running single host put into a 3-host cluster group on a lab of its own (~20 min):
# refused before cluster-adopt with nothing changed, then adopted under a writer (issue 15).
.PHONY: lab-cluster-adopt
lab-cluster-adopt: $(STAMP) host-deps
	PGSTEADY_LAB_ADOPT=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_adopt.py $(PYTEST_ARGS)

# A 4th host added to a RUNNING 3-member cluster on a lab of its own (4 members + backup
# host, ~30 min): one deploy under a writer, the clone from pgBackRest, the gap recorded.
lab-cluster-grow: $(STAMP) host-deps
	PGSTEADY_LAB_GROW=1 $(PYTEST) -q -s tests/lab/test_cluster_lab_grow.py $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PYTEST) -q tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP) host-deps $(PATRONI_STAMP)
	$(PYTEST) -q tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) host-deps
	$(PYTEST) -q tests/e2e $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV) $(PATRONI_VENV)
