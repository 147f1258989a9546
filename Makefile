# The two commands of the README:  `make demo`  and  `make test`.
# Both create .venv on first use. TORCH is what is installed when the environment has no
# torch yet: override it to bring a CUDA build, e.g.
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test tutorials tutorials-test docs lint bench package clean

# The installs take a few minutes the first time: each step says what it installs.
$(BIN)/nclab: pyproject.toml
	@echo "make: creating the environment $(VENV) ($(PYTHON) -m venv)"
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null \
		|| { echo "make: installing $(TORCH), the largest download"; \
		     $(BIN)/python -m pip install $(TORCH); }
	@echo "make: installing nclab with the extras test, mujoco and docs (pip's own lines follow)"
	$(BIN)/python -m pip install -e ".[test,mujoco,docs]"
	touch $@

demo: $(BIN)/nclab
	$(BIN)/nclab demo

test: $(BIN)/nclab
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/python tools/check_types.py
	$(BIN)/python -m pytest -q
	$(MAKE) tutorials-test
	$(MAKE) docs
	$(MAKE) package

# Wheel and sdist as the package index gets them: built, checked by twine, the sdist's
# quick tests run where it is unpacked, the wheel smoke-tested in a fresh venv (.ci/package).
package: $(BIN)/nclab
	bash .ci/package $(BIN)/python

# The notebooks of docs/tutorials, executed top to bottom (each well under a minute on
# 2 cores; a cell that runs past 120 s fails). `make tutorials` stores the new outputs.
NBMAKE := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider --nbmake \
	--nbmake-timeout=120
tutorials-test: $(BIN)/nclab
	$(NBMAKE) docs/tutorials

tutorials: $(BIN)/nclab
	$(NBMAKE) --overwrite docs/tutorials

# The manual and the API reference (from the docstrings); any warning fails the build.
docs: $(BIN)/nclab
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

bench: $(BIN)/nclab
	$(BIN)/python benchmarks/stats_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache
