# fasflow: two commands from a fresh clone, `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: venv demo demo-extended test test-fast lint bench report clean-demo image image-gpu

# The environment is rebuilt only when the lock file or pyproject changes.
$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# profiles/demo: two one-thread training jobs side by side (faster than one two-thread job at 48 px).
DEMO := --profile profiles/demo --cores $(CORES) --configfile config/demo.yaml
# The longest chain first (teacher -> S3 study -> S3), before the other training jobs, which go before
# the exports (rule `priority`). A prioritized target joins the DAG: hence here, not in the profile.
demo: $(STAMP)
	$(BIN)/snakemake $(DEMO) --prioritize results/models/S3/weights.safetensors
	$(BIN)/snakemake $(DEMO) --report results/report.html
	@echo "demo finished: tables in results/tables/, report in results/report.html"

# Beyond the paper on the demo data: seed replicates, identity leakage, leave-one-attack-type-out,
# a cross-dataset test set and a zoo student (9 more models). The demo's own targets are part of the
# same call (nothing to do when `make demo` has run), so one report covers both.
EXTENDED := replicates leakage cross_attack cross_dataset zoo
DEMO_EXTENDED := --profile profiles/demo --cores $(CORES) --configfile config/demo.yaml config/demo_extended.yaml
# After the demo's chain, the random split -> its face caches -> its two models: otherwise they start
# last, beside an idle core.
demo-extended: $(STAMP)
	$(BIN)/snakemake all $(EXTENDED) $(DEMO_EXTENDED) --prioritize results/models/S3/weights.safetensors results/tables/leakage.csv
	$(BIN)/snakemake all $(EXTENDED) $(DEMO_EXTENDED) --report results/report.html
	@echo "extended demo finished: results/tables/{replicates,leakage,cross_attack,cross_dataset,zoo}.md"

# PYTEST_ARGS narrows a run, e.g. PYTEST_ARGS="tests/test_slurm.py" .ci/run
test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not workflow and not container and not slurm"

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check Snakefile workflow/rules

# Apptainer images, cached under ~/.cache/fasflow/images by a hash of definition + lock and
# linked to containers/fasflow-<version>[-cpu].sif (skipped when unchanged). See README.
image:
	nice -n 10 scripts/build-image.sh cpu

image-gpu:
	scripts/build-image.sh gpu

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-demo:
	rm -rf results logs benchmarks/results .snakemake resources/demo
