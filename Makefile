# The two commands a new user needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench chaos fuzz events build deploy-dev clean

$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# The layer's package and the local tools import from the checkout, as the Lambda layer would provide them.
	@printf '%s\n%s\n' "$(CURDIR)/layers/shared" "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/taobao_bridge_checkout.pth"
	@# The operator command .venv/bin/taobao-bridge (pyproject.toml [project.scripts]), editable: it runs this checkout.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

## run: the local stack (DynamoDB on moto, TOP sandbox, the HTTP API on http://127.0.0.1:$${PORT:-3000});
## its tables are kept in .local/dynamodb.json across restarts, FRESH=1 starts them empty
run: $(STAMP)
	$(PY) -m bridge_local run $(if $(filter 1 yes true,$(FRESH)),--fresh)

## test: lint, then every test (unit, integration over HTTP, cfn-lint of template.yaml)
test: $(STAMP) lint
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check layers functions bridge_local bridge_cli tests bench chaos
	$(PY) -m ruff format --check layers functions bridge_local bridge_cli tests bench chaos

typecheck: $(STAMP)
	$(PY) -m mypy layers/shared/taobao_bridge functions bridge_local bridge_cli

## bench: the benchmark suite (issue 11): callback latency and cold start, sync throughput against a naive script and
## taobaopy, cost per record, scale; prints one table, writes docs/BENCHMARKS.md (4 minutes; BENCH_ARGS=--scale-100k)
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## chaos: every fault at once on 10,000 records; prints the table (docs/RELIABILITY.md) and exits 1 on a broken guarantee
chaos: $(STAMP)
	$(PY) -m chaos --records 10000 --seed 1

## fuzz: 1,000 generated requests per route through the local API Gateway + Lambda path (make test runs 100)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=1000 $(PY) -m pytest -q -p no:xdist tests/integration/test_fuzz_http.py

## events: regenerate the sample API Gateway events in events/
events: $(STAMP)
	$(PY) -m bridge_local.events

## build / deploy-dev / deploy-prod: SAM in its own virtual environment (it pins older boto3 and pydantic)
# SAM CLI is pinned: a new version can change what `sam build` puts in the layer. Raise it on purpose.
SAM_CLI_VERSION := 1.170.0
SAM_VENV := $(VENV)-sam
SAM := $(SAM_VENV)/bin/sam
# The Lambda runtime's Python minor (template.yaml: python3.13): sam build needs it on PATH, and the .pyc files the
# build ships must come from it (pyenv: PYENV_VERSION=3.11.7:3.13.0 make build).
PYTHON313 ?= python3.13
BUILD_DIR := .aws-sam/build

.PHONY: deploy-prod

$(SAM_VENV)/.installed-$(SAM_CLI_VERSION):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

build: $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
	@$(PYTHON313) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || \
		{ echo "make build needs Python 3.13 as $(PYTHON313) (the Lambda runtime's); see README, Deploy"; exit 1; }
	$(SAM) build
	@# botocore's data for the services the functions call, not all 449: smaller layer, quicker first client.
	PYTHONPATH=$(CURDIR) $(PYTHON313) -m bridge_local.layer_trim $(BUILD_DIR)/SharedLayer/python
	@# Lambda's /opt (the layer) and /var/task are read-only: a module shipped without its .pyc is compiled again
	@# at every cold start. unchecked-hash, because SAM zips every file dated 1980: a .pyc that checks its source's
	@# timestamp would be stale in Lambda, and a hash-checked one would read and hash every source file. The paths
	@# inside are the ones Lambda uses (-s/-p), so the bytes do not depend on the checkout: same code, same zip.
	@for dir in $(BUILD_DIR)/*/; do \
		dir=$${dir%/}; case "$$dir" in */SharedLayer) dest=/opt ;; *) dest=/var/task ;; esac; \
		echo "compileall $$dir -> $$dest"; \
		$(PYTHON313) -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$$dir" -p "$$dest" "$$dir" || exit 1; \
	done
	@# One AWS SDK: botocore (which the X-Ray SDK needs) only with the boto3 pinned beside it, never under the
	@# runtime's boto3.
	@test ! -d $(BUILD_DIR)/SharedLayer/python/botocore -o -d $(BUILD_DIR)/SharedLayer/python/boto3 || \
		{ echo "the layer has botocore without boto3: pin both in layers/shared/requirements.txt"; exit 1; }

# --no-fail-on-empty-changeset: deploying what is already deployed succeeds (and changes nothing).
deploy-dev: build
	$(SAM) deploy --config-env dev --no-fail-on-empty-changeset

# Needs AlarmEmail in samconfig.toml [prod.deploy.parameters] (the template refuses prod without it).
deploy-prod: build
	$(SAM) deploy --config-env prod --no-fail-on-empty-changeset

clean:
	rm -rf $(VENV) $(VENV)-sam .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
