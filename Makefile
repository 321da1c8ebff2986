# A newcomer needs two commands: `make demo` (Vanilla against the machine's best configuration) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.speedlab-installed

.PHONY: setup browser demo test test-slow lint format docs-config bench-data bench-train bench-activations bench-export bench-families bench-small parity-study bench-monitor bench-fairness fault-drill bench-bound bench-inference bench-harness bench-depthwise bench-compare clean

setup: $(STAMP)

# The venv is rebuilt only when the requirements or the package metadata change.
$(STAMP): requirements.txt requirements-dev.txt requirements-tracking.txt requirements-openvino.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The headline question: Vanilla against this machine's best configuration (cpu_fast at batch 256 on a CPU, tc_amp
# on a GPU) on the quick preset, the speed-up and accuracy difference, then the report of the two runs.
demo: setup
	$(PY) scripts/demo.py

# The fast suite runs on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time so a module's
# shared fixture is built once; tests/conftest.py pins each worker to cores of its own (docs/development.md).
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile --durations=10

# Debian's chromium and chromium-driver for the browser check of `inspect`: installed when missing (a failed set-up,
# not a skipped test, where they cannot be).
browser:
	@scripts/install_browser.sh

# The slow tests on TEST_WORKERS processes too, a test at a time to whichever worker is free (worksteal): their
# lengths run from seconds to minutes, and no one file's total (tests/test_study.py holds about 6 minutes of them)
# should set the suite's length. Those marked `timing`, whose verdicts rest on measured speed, run after, alone
# on the machine. pytest exits 5 when nothing is selected: that is not a failure here.
test-slow: setup browser
	SPEEDLAB_REQUIRE_BROWSER=1 $(PY) -m pytest -m "slow and not timing" -q -n $(TEST_WORKERS) --dist worksteal \
		--durations=10; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]
	$(PY) -m pytest -m "slow and timing" -q --durations=5; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# docs/configuration.md, generated from the schemas (a test fails when it is stale).
docs-config: setup
	$(PY) scripts/config_docs.py

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The small-network regime: the reference's MLP and LeNet5, a row per overhead lever, plus the overhead plots.
bench-small: setup
	$(PY) scripts/bench_small.py

# The reference's parity study (copied weights x aligned random draws, two init schemes) on a small ConvNeXt.
parity-study: setup
	$(PY) scripts/parity_study.py

# What the resource monitor costs: step times with the sampler off and on, interleaved in one process.
bench-monitor: setup
	$(PY) scripts/bench_monitor.py

# Every fault scenario (kill -9, full disk, damaged files, concurrent sweeps, bench cell faults, inspect) in one table.
# The browser row needs Debian's chromium and chromium-driver, which `make browser` installs.
fault-drill: setup browser
	SPEEDLAB_REQUIRE_BROWSER=1 $(PY) scripts/fault_drill.py

# The inference bound: every GEMM and convolution of one forward pass timed alone, against the matmul yardstick.
bench-bound: setup
	$(PY) scripts/inference_bound.py --batches 64,1

# Whether one bench process treats its backends fairly: together (ORT spinning on / off) against one process each.
bench-fairness: setup
	$(PY) scripts/bench_fairness.py

# Inference studies of bench runs: Inductor's levers, batch 1 at its best, EfficientNet-B0, the quick defaults.
bench-inference: setup
	$(PY) scripts/bench_inference.py

# speedlab's timing harness against torch.utils.benchmark.Timer on the same callable (within 5 %).
bench-harness: setup
	$(PY) scripts/check_bench_harness.py

# The fast depthwise convolution's weight gradient and step against torch's, per stage of the quick ConvNeXt.
bench-depthwise: setup
	$(PY) scripts/bench_depthwise.py

# `speedlab compare` on 10 tries of 3 + 3 interleaved runs of one bench config, and of the same pinned to one core.
bench-compare: setup
	$(PY) scripts/bench_compare.py

bench-data: setup
	$(PY) scripts/bench_data.py

# The reference study's four training rows on the quick preset, repeated; prints speed-ups against vanilla.
bench-train: setup
	$(PY) scripts/bench_train.py

# Saved-for-backward bytes, speed (eager and compiled) and step memory of every activation, FastSwish variants included.
bench-activations: setup
	$(PY) scripts/bench_activations.py

# Export time, file size and parity of ONNX fp32 and INT8 per activation and exporter, on trained quick models.
bench-export: setup
	$(PY) scripts/bench_export.py --trained

# Every model family on data it is made for: train, export with parity, bench and profile, one fresh process each.
bench-families: setup
	$(PY) scripts/bench_families.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
