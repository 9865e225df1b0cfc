# RS Seg: `make demo` and `make test` install everything they need on a fresh Debian 12.
SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_OPTS    ?=
APT_PKGS    := qgis python3-qgis qgis-providers python3-gdal python3-numpy \
               python3-rasterio python3-shapely python3-venv python3-pip gdal-bin \
               xvfb xauth
GUI_PKGS    := xvfb xauth
SYS_PY      := /usr/bin/python3
VENV        := .venv
VPY         := $(VENV)/bin/python
STAMP       := $(VENV)/.setup-stamp
DEMO        := build/demo
# torchvision's ResNet-50 source (read from its wheel, never installed: its compiled operators
# need CUDA torch) is the reference tests/engine/weights/test_resnet_reference.py checks against
TORCHVISION_REFERENCE := 0.28.0
export QT_QPA_PLATFORM := offscreen
export DEBIAN_FRONTEND := noninteractive
export QGIS_CUSTOM_CONFIG_PATH := $(CURDIR)/build/qgis-profile
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup apt-deps demo test bad-input-table bench bench-realdata bench-transfer bench-zoo bench-polygons bench-loop bench-loop-round gpu-check qgis package gui-shot gui-deps clean

setup: apt-deps $(STAMP)

# Checked on every run (cheap), so a kept work tree on a new machine still gets its packages.
apt-deps:
	@if ! dpkg -s $(APT_PKGS) >/dev/null 2>&1; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) apt-get install -y -q --no-install-recommends $(APT_OPTS) $(APT_PKGS); fi

$(STAMP): requirements.txt constraints.txt
	$(SYS_PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(VPY) scripts/check_env.py
	touch $@

demo: setup
	$(VPY) scripts/demo.py --out $(DEMO)
	$(VPY) scripts/demo_project.py $(DEMO)

# One torch thread: the tests use tiny models, where thread start-up costs more than it saves,
# and the pipeline's reader/writer threads get the other core.
test: setup
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements-test.txt -c constraints.txt
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-test-nodeps.txt
	$(VPY) -m pip download -q --disable-pip-version-check --no-deps -d build/reference \
	  torchvision==$(TORCHVISION_REFERENCE) || echo "torchvision wheel not downloaded: its reference test skips"
	OMP_NUM_THREADS=1 $(VPY) -m pytest

bad-input-table: setup   # docs/bad-input.md: bad input → message, written by the tests themselves
	rm -f docs/bad-input.md
	RS_SEG_WRITE_BAD_INPUT=1 OMP_NUM_THREADS=1 $(VPY) -m pytest -q tests/engine/test_bad_input.py \
	  tests/engine/test_cli_interrupt.py

bench: setup
	$(VPY) bench/run.py

bench-realdata: setup      # accuracy on ../shared/data (long: trains several models)
	$(VPY) bench/realdata.py

bench-transfer: setup      # transfer to other GSD/radiometry, fine-tuning (long: trains models)
	$(VPY) bench/transfer.py

bench-zoo: setup           # the model zoo on real data at equal time budgets (long)
	$(VPY) bench/zoo.py

bench-polygons: setup      # building polygons raw / simplified / regularised on ../shared/data
	OMP_NUM_THREADS=1 $(VPY) bench/polygons.py

bench-loop: setup          # the analyst's loop simulated on LoveDA: strata vs random vs scratch (long)
	$(VPY) bench/loop.py

bench-loop-round: setup    # times one round alone (refine, 2-minute budget, + re-predict a 2048² scene)
	$(VPY) bench/loop.py --part round

gpu-check: setup           # CUDA machine: CUDA tests + GPU benchmarks (< 8 min) → docs
	$(VPY) bench/gpu.py

qgis: setup gui-deps      # QGIS desktop with the plugin from this tree (opens build/demo/demo.qgz)
	$(VPY) scripts/gui_smoke.py --desktop

package:                  # dist/rs_seg_qgis.zip for Plugins ▸ Install from ZIP (stdlib only)
	$(SYS_PY) scripts/package.py

gui-shot: setup gui-deps  # screenshots under Xvfb → build/test-output/gui_dock.png, gui_1..7_*.png
	$(VPY) scripts/gui_smoke.py --out build/test-output/gui_dock.png
	$(VPY) scripts/gui_states.py --out build/test-output

gui-deps:
	@dpkg -s $(GUI_PKGS) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
	  $(SUDO) apt-get install -y -q --no-install-recommends $(GUI_PKGS); }

clean:
	rm -rf $(VENV) build dist bench/results .qgis-settings
