# lrpbook: two commands do all set-up on a fresh machine.
#   make test   create .venv, install, run ruff + unit tests + the chapters under nbval (lax)
#   make book   create .venv, install, build the HTML book (every chapter executed on CPU)
# Exact versions are pinned here (and only here); pyproject.toml keeps loose ranges.

PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
TORCH_PINS = torch==2.14.1 torchvision==0.29.1
JOBS   ?= 2
BOOK_OUT = book/_build
JB_ARGS  = . --config book/_config.yml --toc book/_toc.yml --path-output book

.PHONY: all venv test lint unit nbval book notebooks browser-test bench clean help

help:
	@echo "make test      ruff + unit tests + chapters under nbval (creates .venv if needed)"
	@echo "make book      build the HTML book into $(BOOK_OUT)/html, executing every chapter"
	@echo "make notebooks write .ipynb copies of the chapters into ipynb/ (git-ignored)"
	@echo "make browser-test  open every page of the built book in headless Chromium (after make book)"
	@echo "make nbval NB=notebooks/04_lrp_error.md   execute one chapter under nbval"
	@echo "make bench     run every benchmark in --quick mode"
	@echo "make clean     remove build products (keeps .venv)"

all: test book

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[book,test]" $(TORCH_PINS)
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check lrpbook tests benchmarks conftest.py book

# pytest exits 5 when it collects nothing: for the unit tests that is a failure, for the chapters
# (a checkout without notebooks) it is not.
unit: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests -q -n $(JOBS) -p no:cacheprovider; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "no unit tests were collected"; exit 1; fi; exit $$rc

# nbval writes the chapters it executed into $(NBVAL_EXPORT); `make book` reuses them (conftest.py,
# book/cache_nbval.py), so `make test && make book` executes each chapter once.
NB ?= notebooks
NBVAL_EXPORT = $(BOOK_OUT)/.nbval
nbval: $(STAMP)
	@rm -rf $(NBVAL_EXPORT)
	LRPBOOK_NBVAL_EXPORT=$(NBVAL_EXPORT) $(PY) -m pytest $(NB) --nbval-lax --nbval-current-env -q -n $(JOBS) --dist loadfile \
	  -p no:cacheprovider; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "no chapters were collected"; exit 0; fi; exit $$rc

test: lint unit nbval

notebooks: $(STAMP)
	@mkdir -p ipynb
	@for f in notebooks/[0-9]*.md; do $(VENV)/bin/jupytext -q --to ipynb -o ipynb/$$(basename $${f%.md}).ipynb $$f; done
	@$(PY) book/add_install_note.py ipynb/*.ipynb
	@echo "wrote $$(ls ipynb/*.ipynb | wc -l) notebooks into ipynb/ (open them with: $(VENV)/bin/jupyter lab ipynb/)"

# The rendered book offers every chapter as a downloadable .ipynb: they are written into
# $(BOOK_OUT)/extra/notebooks/ and copied next to the chapter pages through html_extra_path.
book: $(STAMP)
	@rm -rf $(BOOK_OUT)/extra && mkdir -p $(BOOK_OUT)/extra/notebooks
	@for f in notebooks/[0-9]*.md; do $(VENV)/bin/jupytext -q --to ipynb -o $(BOOK_OUT)/extra/notebooks/$$(basename $${f%.md}).ipynb $$f; done
	@$(PY) book/add_install_note.py $(BOOK_OUT)/extra/notebooks/*.ipynb
	$(PY) book/cache_nbval.py $(NBVAL_EXPORT) $(BOOK_OUT)/.jupyter_cache
	$(VENV)/bin/jupyter-book build $(JB_ARGS) -W -n --keep-going
	@echo "open $(BOOK_OUT)/html/index.html"

# The built book in a real browser (headless Chromium, network off): math rendered, images
# loaded, no JavaScript error, no request leaving the machine. Needs `make book` first and a
# system Chromium (Debian: apt-get install chromium); skips with a message otherwise.
browser-test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest tests/test_book_browser.py tests/test_book_pages.py -q -p no:cacheprovider -rs

bench: $(STAMP)
	@for b in benchmarks/*_speed.py benchmarks/train_step.py; do \
	  [ -f $$b ] || continue; echo "== $$b"; MPLBACKEND=Agg $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(BOOK_OUT) ipynb .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
