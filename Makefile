# The two set-up commands. Each makes .venv if it is missing and installs galseg into it.
# TORCH: the torch requirement to install first. These CPU machines have a local CPU build
# (torch==2.13.0); on a GPU machine install your CUDA build of torch into .venv first, and the
# bounded requirement below is already satisfied, so nothing is replaced.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs bench ready-model

$(BIN)/galseg: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e ".[test]"
	touch $@

demo: $(BIN)/galseg
	$(BIN)/galseg demo --out demo-output

test: $(BIN)/galseg
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

# The documentation (Sphinx, MyST): docs/_build/html/index.html. The tests build it too, warnings as errors.
docs: $(BIN)/galseg
	$(BIN)/python -m sphinx -b html -W --keep-going docs docs/_build/html

bench: $(BIN)/galseg
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/bench_heads.py
	$(BIN)/galseg synth --out benchmarks/results/arms/gz3d --n 600 --seed 5 --no-preview
	$(BIN)/galseg prepare benchmarks/results/arms/gz3d --out benchmarks/results/arms/dataset
	$(BIN)/galseg demo --out demo-output
	$(BIN)/python benchmarks/bench_arms.py --dataset benchmarks/results/arms/dataset --run demo-output/run --split all
	$(BIN)/python benchmarks/bench_volunteers.py benchmarks/results/arms/gz3d
	$(BIN)/python benchmarks/bench_fits_tables.py
	$(BIN)/python benchmarks/bench_resize.py
	$(BIN)/python benchmarks/bench_real.py --run demo-output/run
	$(BIN)/python benchmarks/bench_precision.py --run demo-output/run
	$(BIN)/python benchmarks/bench_bars.py --dataset benchmarks/results/arms/dataset --run demo-output/run --split all
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt pyarcfire
	$(BIN)/python benchmarks/bench_pyarcfire.py --dataset benchmarks/results/arms/dataset --run demo-output/run
	$(BIN)/python benchmarks/bench_predict.py --run demo-output/run --n 1000 --compile
	$(BIN)/python benchmarks/bench_recipes.py --dataset demo-output/dataset --minutes 10 --parallel 2 \
		--recipe base:target=spiral --recipe noise16:target=spiral,noise=0.16

# The network shipped in src/galseg/ready_model/: fixed seeds, checked on ../shared/real.
ready-model: $(BIN)/galseg
	$(BIN)/galseg ready-model --work ready-model-work --real ../shared/real
