# The two commands a new user needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench events build deploy-dev clean

$(STAMP): requirements-dev.txt layers/shared/requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# The layer's package and the local tools import from the checkout, as the Lambda layer would provide them.
	@printf '%s\n%s\n' "$(CURDIR)/layers/shared" "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/taobao_bridge_checkout.pth"
	@touch $(STAMP)

## run: the local stack (DynamoDB on moto, TOP sandbox, the HTTP API on http://127.0.0.1:$${PORT:-3000})
run: $(STAMP)
	$(PY) -m bridge_local run

## test: lint, then every test (unit, integration over HTTP, cfn-lint of template.yaml)
test: $(STAMP) lint
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check layers functions bridge_local tests bench
	$(PY) -m ruff format --check layers functions bridge_local tests bench

typecheck: $(STAMP)
	$(PY) -m mypy layers/shared/taobao_bridge functions bridge_local

## bench: latency of the Qimen callback on the local stack (prints figures and the command)
bench: $(STAMP)
	$(PY) -m bench.qimen_latency

## events: regenerate the sample API Gateway events in events/
events: $(STAMP)
	$(PY) -m bridge_local.events

## build / deploy-dev: SAM in its own virtual environment (it pins older boto3 and pydantic)
$(VENV)-sam/.installed:
	$(PYTHON) -m venv $(VENV)-sam
	$(VENV)-sam/bin/pip install --quiet aws-sam-cli
	@touch $@

build: $(VENV)-sam/.installed
	$(VENV)-sam/bin/sam build

deploy-dev: build
	$(VENV)-sam/bin/sam deploy --config-env dev

clean:
	rm -rf $(VENV) $(VENV)-sam .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
