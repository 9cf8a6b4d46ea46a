# ownedaudience: `make run` serves the platform, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install run test bench-send bench-signup bench-import bench-erase bench-guard bench-dkim clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || "$$(sh scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) scripts/dev.py

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The send benchmark on PostgreSQL and Redis (see BENCHMARKS.md); N=100000 for one size.
bench-send: install
	$(PY) bench/send.py $(if $(N),--n $(N))
# Signups/s on gunicorn + PostgreSQL + Redis; ends with one JSON line (see BENCHMARKS.md).
bench-signup: install
	$(PY) bench/signup.py

# Import of an N-row Substack file, the same again, then the export; ends with one JSON line.
bench-import: install
	$(PY) bench/import.py $(if $(N),--n $(N))

bench-erase: install
	$(PY) bench/erase.py

# The send guard's counting on a million-row send (feedback/guard.py); ends with one JSON line.
bench-guard: install
	$(PY) bench/guard.py

# DKIM signing cost per message, signed against unsigned, in one process.
bench-dkim: install
	$(PY) bench/dkim_sign.py

clean:
	rm -rf $(VENV) var
