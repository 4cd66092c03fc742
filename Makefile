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
	$(PY) -m pip install -q -e '.[test,runtimes,phones,studies]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/archlab study run studies/quickstart.yaml
	$(VENV)/bin/archlab study pareto studies/quickstart.yaml
	$(VENV)/bin/archlab report studies/quickstart.yaml --out out/quickstart/report.html
	$(VENV)/bin/archlab export studies/quickstart.yaml --pick "latency_ms<=4000" --out out/quickstart/export
	@echo "report: out/quickstart/report.html"
	@echo "export: out/quickstart/export (MODEL_CARD.md, model.safetensors, model.onnx, handoff.yaml)"

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
