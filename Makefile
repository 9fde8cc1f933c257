# Two entry points: `make run` (install, ask the built-in default model a question) and
# `make test` (install with the test extras, fetch the default model, lint, run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-slow test-finetune mutation mutation-sample lint typecheck venv install install-dev install-chat install-finetune model finetune docs install-docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

# torch==2.13.0 is the CPU build (a bare `torch` would pull GBs of CUDA); transformers needs it to
# read GGUF tokenizers and to run models
# llama-cpp-python compiles from source (about 5 minutes on 2 cores); portable CPU flags, since a
# native build uses AMX/AVX-512 kernels that crash on machines (or VMs) that do not enable them
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
# tests/plugins/acme_plugin: a real plugin package (a format, an output parser and a record kind through
# entry points) for tests/test_plugins.py; --no-deps: it is loaded by the chatfmt installed just before
install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps -e tests/plugins/acme_plugin

# the chat extra: transformers (+ the CPU torch build) runs the default model
install-chat: $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[chat]"

# a real chat: installs, fetches the default model (SmolLM2-135M-Instruct) and answers
run: install-chat
	$(BIN)/python -m chatfmt.models >/dev/null
	$(BIN)/chatfmt chat -p "What is the capital of France?" --temperature 0 --max-new-tokens 48

model: install
	$(BIN)/python -m chatfmt.models

lint: install-dev typecheck
	$(BIN)/ruff check src tests

# mypy --strict over src/chatfmt (the settings are pyproject.toml's [tool.mypy])
typecheck: install-dev
	$(BIN)/mypy

# the docs site (mkdocs.yml: docs/*.md and API pages from the docstrings) into build/site; --strict
# fails on a broken link, a missing anchor or a docstring the API pages cannot read
install-docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"

docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

# the default run on PYTEST_WORKERS processes (pytest-xdist; a test file stays on one worker, so its
# module fixtures (a model, a server) load once); PYTEST_WORKERS=0 runs in this process
PYTEST_WORKERS ?= 2

test: install-dev model lint
	$(BIN)/python -m pytest -q -m "not slow" -n $(PYTEST_WORKERS) --dist loadfile

test-slow: install-dev model
	$(BIN)/python -m pytest -q -m "slow and not finetune" -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# mutation testing (mutmut 3) of the modules where a one-line bug silently corrupts data: encode and
# labels, message validation, the output parser's markers, the SentencePiece/tiktoken adapters, the
# packer; each module its own session under build/mutation, niced; a survivor that is neither killed
# nor listed in mutation/justified.toml fails it (docs/testing.md, "Mutation testing")
mutation: install-dev model
	nice -n 10 $(BIN)/python scripts/mutation.py run --check

# the bounded, seeded sample .ci/run runs (MUTATION_SEED=<n> picks another sample)
mutation-sample: install-dev model
	nice -n 10 $(BIN)/python scripts/mutation.py sample --count 40

# the real fine-tune (examples/finetune) as a test: trains, then checks held-out answers
test-finetune: install-dev model
	$(BIN)/python -m pytest -q -m finetune tests/examples/test_finetune.py

# a real fine-tune on the CPU (examples/finetune): data -> chatfmt prepare -> TRL + LoRA -> chat/serve,
# held-out questions before and after; about 10 minutes on 2 cores, output in build/finetune
install-finetune: $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[finetune]"

finetune: install-finetune
	$(BIN)/python -m chatfmt.models >/dev/null
	$(BIN)/python examples/finetune/run.py --out build/finetune

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
