# Thin wrapper over CMake: `make demo` (set-up + the main job), `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
ifeq ($(CI),true)
  CMAKE_ARGS += -DFLOCK_WERROR=ON
endif
# Shared test models and data beside the checkout, when present.
FLOCK_TEST_DATA ?= $(if $(wildcard ../shared/models),$(abspath ../shared),)
export FLOCK_TEST_DATA

.PHONY: all build test test-sanitize fuzz demo deps setup clean

all: build

deps:
	@tools/setup.sh --deps-only

setup:
	@tools/setup.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: deps
	@$(MAKE) --no-print-directory build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Under the sanitizers: every test but the Python parity checks on the real
# models and the NVRTC compiles (they run in `make test`; the same code paths
# run here on stories260K and on the tests' own small models).
SANITIZE_EXCLUDE ?= gemma|smollm|nvrtc
test-sanitize: deps
	@$(MAKE) --no-print-directory build BUILD=build-asan \
	  CMAKE_ARGS="$(CMAKE_ARGS) -DFLOCK_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"
	@cd build-asan && ctest --output-on-failure -j$(JOBS) -E '$(SANITIZE_EXCLUDE)'

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
