# Thin wrapper over CMake: `make demo` (set-up + the main job), `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
ifeq ($(CI),true)
  CMAKE_ARGS += -DFLOCK_WERROR=ON
endif
# After each ctest run: one line naming every skipped test and why, then the
# count. NO_SKIP=1 (CI sets it) fails the run when anything skipped that
# ALLOWED_SKIPS (a regular expression over "name: reason") does not match:
# every model, text and package comes from the set-up, so only what no
# set-up can give the machine may skip.
ALLOWED_SKIPS ?= needs a GPU
SUMMARY = python3 $(CURDIR)/tools/test-summary.py ctest-junit.xml $(if $(filter 1,$(NO_SKIP)),--fail-on-skip --allow '$(ALLOWED_SKIPS)',)
CTEST = ctest --output-on-failure -j$(JOBS) --output-junit ctest-junit.xml

.PHONY: all build test test-sanitize fuzz demo deps setup clean

all: build

# Everything the tests read: packages, torch + transformers, both models, the text.
deps:
	@tools/setup.sh --test

setup:
	@tools/setup.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: deps
	@$(MAKE) --no-print-directory build
	@cd $(BUILD) && rc=0 && { $(CTEST) || rc=$$?; } && { $(SUMMARY) || rc=1; } && exit $$rc

# Under the sanitizers: every test but the Python parity checks on the real
# models and the NVRTC compiles (they run in `make test`; the same code paths
# run here on the tiny trained model and on the tests' own small models).
SANITIZE_EXCLUDE ?= gemma|smollm|nvrtc
test-sanitize: deps
	@$(MAKE) --no-print-directory build BUILD=build-asan \
	  CMAKE_ARGS="$(CMAKE_ARGS) -DFLOCK_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"
	@cd build-asan && rc=0 && { $(CTEST) -E '$(SANITIZE_EXCLUDE)' || rc=$$?; } && { $(SUMMARY) || rc=1; } && exit $$rc

demo: setup
	@$(MAKE) --no-print-directory build
	@tools/demo.sh

FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DFLOCK_FUZZ=ON \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	@# seed regression runs, and test_tokenizer, which writes the tokdata seeds
	@cd build-fuzz && ctest --output-on-failure -R '^(test_tokenizer|test_codegen|fuzz_.*_seeds)$$'
	@tools/run-fuzzers.sh build-fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-fuzz
