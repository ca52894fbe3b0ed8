# Two entry points, both used verbatim by README.md and .ci/run:
#   make serve   set up .venv and start the gRPC server on the shipped default bundle
#   make test    set up .venv and run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 50051

export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup serve test browser bundle clean

setup: $(STAMP)

# Re-install only when the declared dependencies change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/fakeface serve --port $(PORT)

# The web page's tests drive a real headless Chromium: Debian's chromium + chromium-driver.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing chromium + chromium-driver for the browser tests"; \
	  sudo_cmd=""; [ "$$(id -u)" -eq 0 ] || sudo_cmd=sudo; \
	  $$sudo_cmd apt-get update -q && $$sudo_cmd env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q chromium chromium-driver \
	  || echo "could not install chromium; the browser tests will be skipped" >&2; \
	fi

# Two passes: the unit tests mostly keep one core busy, so two pytest-xdist workers run them side
# by side; the end-to-end tier (real Ray, Serve replicas, gRPC, the browser) uses both cores on its
# own and runs after, one test at a time (measured: BENCHMARKS.md, "Suite time"). Work stealing
# evens out the long unit tests between the two workers (93 s against 97 s dealt out up front).
# Both passes share one folder for the run (tests/conftest.py: the tiny bundle is trained once).
test: $(STAMP) browser
	@shared=$$(mktemp -d -t fakeface-test-XXXXXX) && trap 'rm -rf "$$shared"' EXIT && \
	export FAKEFACE_TEST_SHARED=$$shared && set -x && \
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --ignore=tests/e2e && \
	$(BIN)/python -m pytest -q tests/e2e

# Rebuilds the shipped default bundle from ../shared/data (README "What ships"): the LeNet and
# custom CNNs (each face standardised by its own crop, 64 px) on the mixed split (DFDC + gan-faces
# + lfw-swaps; half their samples cut the way serving cuts a detected face), custom taken in with
# `bundle swap-agent`; the forensic agent on the mixed split (each image also as a screenshot-like
# degraded copy cut the way serving cuts a detected face, and 30 % composed into a player or phone
# screenshot whose face the detector finds), swapped in the same way; VGG-16-BN from scratch on
# the CNNs' images (README "What ships"), swapped in the same way; then the controller with its
# baselines and replay set (on the mixed split's val, clean and degraded; no context: grouped CV
# found none that helps these agents, BENCHMARKS.md; each agent's own calibration refitted there
# for even odds) and the "can't tell" model. The four agents share one work folder: LeNet trains
# first and finds the train faces' landmarks (serving's cut, ~10 min) and the 64 px caches that
# custom and VGG-16-BN reuse and forensic's aligned copies read; then custom, forensic and
# VGG-16-BN train two at a time (`bundle-agents`, make jobs; forensic finds the val faces'
# landmarks itself; the caches' shards are written under hidden names and renamed, so none reads
# another's half-written file). Measured from a fresh clone on 2 cores with three agents: 2 h 11
# min (BENCHMARKS.md, "`make bundle` end to end"); VGG-16-BN adds its 84 min of both cores: ~3 h
# 30 min, estimated, on 2 AVX-512 cores with bfloat16; on 2 AVX2 cores without it every agent trains
# 2-3x slower and VGG-16-BN alone takes ~5 h in float32: ~10 h, estimated from each agent's rate
# (BENCHMARKS.md, "Training precision follows the CPU"; benchmarks/bench_make_bundle.py measures it). Every agent checkpoints
# (the forensic features are cached), so rerunning `make bundle` resumes. It ends by signing the bundle with the project's
# private key, kept outside the repository (docs/usage/bundle.md); the steps before load the
# half-built bundle with --allow-unsigned.
BUNDLE_MANIFEST := benchmarks/splits/dfdc-extra.csv
MIXED_MANIFEST := benchmarks/splits/mixed.csv
BUNDLE_WORK := agents/default_bundle.mixed.work
SIGNING_KEY ?= $(or $(FAKEFACE_SIGNING_KEY),$(HOME)/.config/fakeface/bundle-signing.key)
CNN_RECIPE := --optimizer adam --lr 1e-3 --lr-schedule cosine --epochs 30 --patience 8 --batch-size 64 \
    --storage-dtype float16 --workers 2
bundle: $(STAMP)
	@test -r "$(SIGNING_KEY)" || { echo "make bundle: no signing key at $(SIGNING_KEY); set SIGNING_KEY=PATH (docs/usage/bundle.md)" >&2; exit 2; }
	$(BIN)/python benchmarks/splits/make_dfdc_extra.py
	$(BIN)/fakeface train --manifest $(MIXED_MANIFEST) --agents lenet --out agents/default_bundle \
	    --work-dir $(BUNDLE_WORK) --keep-work $(CNN_RECIPE) --agent-option lenet:cut_share=0.5
	$(MAKE) --no-print-directory -j2 --output-sync=target bundle-agents
	$(BIN)/fakeface bundle swap-agent --bundle agents/default_bundle --from agents/default_bundle.custom --agent custom
	$(BIN)/fakeface bundle swap-agent --bundle agents/default_bundle --from agents/default_bundle.forensic --agent forensic
	$(BIN)/fakeface bundle swap-agent --bundle agents/default_bundle --from agents/default_bundle.vgg16 --agent vgg16
	$(BIN)/fakeface fit-controller --allow-unsigned --bundle agents/default_bundle --manifest $(MIXED_MANIFEST) \
	    --context none --degraded-copies 1
	$(BIN)/fakeface fit-ood --allow-unsigned --bundle agents/default_bundle --manifest $(BUNDLE_MANIFEST)
	$(BIN)/fakeface bundle sign --key $(SIGNING_KEY) --bundle agents/default_bundle
	$(BIN)/fakeface bundle verify --bundle agents/default_bundle

# `make bundle`'s middle step: custom, forensic and VGG-16-BN, each into its own bundle, two at a
# time (VGG-16-BN starts when the first of the others ends).
.PHONY: bundle-agents bundle-custom bundle-forensic bundle-vgg16
bundle-agents: bundle-custom bundle-forensic bundle-vgg16
bundle-custom:
	$(BIN)/fakeface train --manifest $(MIXED_MANIFEST) --agents custom --out agents/default_bundle.custom \
	    --work-dir $(BUNDLE_WORK) --keep-work $(CNN_RECIPE) --agent-option custom:cut_share=0.5
bundle-forensic:
	$(BIN)/fakeface train --manifest $(MIXED_MANIFEST) --agents forensic --out agents/default_bundle.forensic \
	    --work-dir $(BUNDLE_WORK) --keep-work --workers 2 --agent-option forensic:aligned_copies=1 \
	    --agent-option forensic:detected_share=0.3
# VGG-16-BN from scratch at half width on the face standardised by its own crop, 64 px: 20 epochs,
# in bfloat16 where a GPU or the CPU computes it (avx512_bf16, AMX: 110 img/s on 2 cores) and in
# float32 elsewhere (`--precision auto`; on 2 Zen 3 cores 25-32 img/s, emulated bfloat16 3.8).
bundle-vgg16:
	$(BIN)/fakeface train --manifest $(MIXED_MANIFEST) --agents vgg16 --vgg16-batch-norm --vgg16-width 0.5 \
	    --input-size vgg16=64 --precision auto --out agents/default_bundle.vgg16 \
	    --work-dir $(BUNDLE_WORK) --keep-work $(CNN_RECIPE) --epochs 20 \
	    --agent-option vgg16:cut_share=0.5 --agent-option vgg16:screenshot_augment=0.25

clean:
	rm -rf $(VENV) .pytest_cache
