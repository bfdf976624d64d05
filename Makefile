# make test: lint, format check and the test suite.
# make demo: the whole pipeline on a generated delivery against the stand-ins
#            (KEEP=1 keeps the store up to browse the catalog until Ctrl-C).
# make lab:  the lab in a box in LAB_DIR (default lab/) until Ctrl-C: the store, SMTP with a
#            web inbox, the delivery; FRESH=1 starts over; LAB_STORE_PORT, LAB_SMTP_PORT,
#            LAB_INBOX_PORT move the ports. make lab-check grades the lab's five steps there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: test demo bench clean blocks coverage lab lab-check

# The scripts are written and tested for Python 3.11 or newer; on an older one, stop
# at once with one line rather than fail later inside pip or a test.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "Python 3.11 or newer is needed; $(PYTHON) is $$($(PYTHON) -V 2>&1). Try: make PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): requirements.txt requirements-dev.txt | $(BIN)/python
	@echo "installing the pinned requirements into $(VENV) (once, and after they change)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# Branch coverage of the scripts, in the test process and the scripts it starts.
coverage: $(INSTALLED)
	$(BIN)/python -m pytest --cov --cov-report=term

demo: $(INSTALLED)
	$(BIN)/python sandbox/demo.py $(if $(KEEP),--keep)

LAB_DIR ?= lab
LAB_ARGS = --dir "$(LAB_DIR)" $(if $(FRESH),--fresh) \
  $(if $(LAB_STORE_PORT),--store-port $(LAB_STORE_PORT)) \
  $(if $(LAB_SMTP_PORT),--smtp-port $(LAB_SMTP_PORT)) \
  $(if $(LAB_INBOX_PORT),--inbox-port $(LAB_INBOX_PORT))
lab: $(INSTALLED)
	$(BIN)/python sandbox/lab.py $(strip $(LAB_ARGS))

lab-check: $(INSTALLED)
	$(BIN)/python sandbox/lab_check.py --dir "$(LAB_DIR)"

bench: $(INSTALLED)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache

# Rewrite the shared blocks' copies in the scripts from their homes in blocks/.
blocks: $(INSTALLED)
	$(BIN)/python tools/sync_blocks.py
