# Two commands do all set-up on a fresh machine:
#   make run   - the whole system (API, worker, beat, Flower, metrics exporter) on embedded defaults
#   make test  - the whole test suite (real Redis, database, Tansu, moto, aiosmtpd, Celery worker)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test test-unit test-cluster lint translations api stream worker beat flower exporter migrate bench bench-eta bench-queue bench-draw bench-pow locust clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	bash .ci/system-deps --run
	$(BIN)/python -m devtools.devstack

test: install
	bash .ci/system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/cluster $(PYTEST_ARGS)

# the waiting room and booking on a local 3-master Redis Cluster (a separate run: the whole app is
# configured for the cluster through the environment); needs TEST_DATABASE_URL and TEST_REDIS_URL
test-cluster: install
	$(BIN)/python -m pytest tests/cluster $(PYTEST_ARGS)

# the unit layer alone: pure logic, no services, a few seconds (make test runs it with the rest)
test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# the web app's texts: extract, merge into the Korean catalogue (translate the new msgstr), compile
translations: install
	$(BIN)/pybabel extract -F app/web/babel.cfg -o app/web/translations/messages.pot .
	$(BIN)/pybabel update -i app/web/translations/messages.pot -d app/web/translations
	$(BIN)/pybabel compile -d app/web/translations

migrate: install
	$(BIN)/flask --app wsgi db upgrade

api: install
	$(BIN)/python -m app.serve

stream: install
	BIND=0.0.0.0:8001 $(BIN)/gunicorn -c docker/gunicorn.conf.py wsgi:app

worker: install
	$(BIN)/celery -A tasks worker -l INFO  # every queue of celeryconfig.QUEUES

beat: install
	$(BIN)/celery -A tasks beat -l INFO

flower: install
	$(BIN)/celery -A tasks flower --port=5555

exporter: install
	$(BIN)/python -m app.exporter

# the flash sale against a reference app in one run (wrk; JSON in var/bench/flash-sale.json)
bench: install
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	@command -v nginx >/dev/null || { echo "make bench needs nginx (the micro-cache, the SNS stand-in): apt-get install nginx-light" >&2; exit 1; }
	$(BIN)/python -m bench.flash_sale $(BENCH_ARGS)
	$(BIN)/python -m bench.serving_bench $(SERVING_ARGS)
	$(BIN)/python -m bench.push_bench $(PUSH_ARGS)

# the fan journey with Locust against a deployment: make locust HOST=https://... EVENT_ID=1
locust:
	test -x $(VENV)/load/bin/locust || { $(PYTHON) -m venv $(VENV)/load && $(VENV)/load/bin/pip install -q -r requirements-load.txt; }
	EVENT_ID=$(EVENT_ID) $(VENV)/load/bin/locust -f bench/locustfile.py --host $(HOST)

# how honest the wait estimate is, in four sales (JSON in var/bench/eta.json)
bench-eta: install
	$(BIN)/python -m bench.eta_bench $(BENCH_ARGS)

bench-queue: install
	$(BIN)/python -m bench.queue_bench $(BENCH_ARGS)

bench-draw: install
	$(BIN)/python -m bench.draw_bench $(BENCH_ARGS)

bench-pow: install
	$(BIN)/python -m bench.pow_flood $(BENCH_ARGS)


clean:
	rm -rf $(VENV) instance var .pytest_cache .ruff_cache
