# Two entry points: `make demo` (the main job on embedded defaults) and `make test`.
# Both create .venv with pip when it is missing and install archlab with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.archlab-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this machine serves these two from local files (a plain `torch` pulls GBs)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,runtimes,phones,clip]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/archlab presets
	for p in $$($(PY) -c "import archlab; print(' '.join(archlab.list_presets()))"); do \
		$(VENV)/bin/archlab describe $$p || exit 1; \
	done

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
