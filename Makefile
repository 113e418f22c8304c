# renalnode: one-command setup and tests. Every target is safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := orthanc orthanc-dicomweb orthanc-python dcmtk dicom3tools chromium chromium-driver postgresql rabbitmq-server \
  podman runc podman-docker debootstrap iptables
# Root installs Debian packages directly; anyone else goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages viewer lint test phantoms demo-model clean-venv map demo

setup: system-packages $(VENV)/.installed viewer

# The pinned OHIF build (npm package @ohif/app, integrity-checked) under build/viewer; once.
viewer: $(VENV)/.installed
	$(PY) -m deploy.viewer.fetch

# Installs only what is missing, so a configured machine is left untouched (and needs no network).
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	else echo "Debian packages present: $(DEBIAN_PACKAGES)"; fi
	@# Podman's settings for machines like this project's (see deploy/container/containers.conf).
	@cmp -s deploy/container/containers.conf /etc/containers/containers.conf.d/50-renalnode.conf || \
	  { $(SUDO) mkdir -p /etc/containers/containers.conf.d && \
	    $(SUDO) cp deploy/container/containers.conf /etc/containers/containers.conf.d/50-renalnode.conf; }

# The stamp holds a hash of the pins, so editing requirements.txt or pyproject.toml rebuilds .venv.
$(VENV)/.installed: requirements.txt pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# ruff over the repository, mypy over the core, the app and the node (settings in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy renalnode app operators deploy

test: setup lint
	$(PY) -m pytest

# Example: make phantoms OUT=/tmp/phantoms CASES=3
phantoms: setup
	$(VENV)/bin/renalnode phantom --out $(or $(OUT),phantoms) --cases $(or $(CASES),3) --seed $(or $(SEED),0)

clean-venv:
	rm -rf $(VENV)

# The bundled demo model: domain-randomised phantoms -> import -> tiny training of fold 0 ->
# post-processing chosen on its cross-validation -> evaluation on the held-out split and on a
# shifted set (full-size matrix, 0.75 mm slices, 48 HU noise: outside the training ranges) ->
# models/renalnode-demo. Resumable: an interrupted run goes on where it stopped. About four hours
# on a 2-core CPU; DEMO_FOLDS=0,1,2,3,4 trains the paper's five folds in about fourteen.
DEMO_WORKSPACE := workspace/demo
DEMO_DATASET := 990
DEMO_FOLDS := 0
demo-model: setup
	$(VENV)/bin/renalnode phantom --out $(DEMO_WORKSPACE)/phantoms --cases 45 --seed 2026 --small --position mixed
	$(VENV)/bin/renalnode phantom --out $(DEMO_WORKSPACE)/phantoms --cases 45 --seed 2027 --small --position mixed
	$(VENV)/bin/renalnode phantom --out $(DEMO_WORKSPACE)/shifted --cases 8 --seed 4242 --position mixed \
	  --slice-thickness 0.75 --noise-hu 48
	[ -d $(DEMO_WORKSPACE)/nnUNet_raw/Dataset$(DEMO_DATASET)_RenalPhantom ] || \
	  $(VENV)/bin/renalnode train import --workspace $(DEMO_WORKSPACE) --dataset $(DEMO_DATASET) --source phantom \
	    --input $(DEMO_WORKSPACE)/phantoms --name RenalPhantom --test-fraction 0.2 --seed 2026
	nice $(VENV)/bin/renalnode train run --workspace $(DEMO_WORKSPACE) --dataset $(DEMO_DATASET) --profile tiny \
	  --folds $(DEMO_FOLDS)
	$(VENV)/bin/renalnode train evaluate --workspace $(DEMO_WORKSPACE) --dataset $(DEMO_DATASET) --profile tiny \
	  --shifted $(DEMO_WORKSPACE)/shifted
	$(VENV)/bin/renalnode train export --workspace $(DEMO_WORKSPACE) --dataset $(DEMO_DATASET) --profile tiny \
	  --out models/renalnode-demo --name renalnode-demo-phantom --version 0.4.2 \
	  --description "Demo model trained on 72 domain-randomised synthetic phantoms (renalnode phantom --small --position mixed, seeds 2026 and 2027) with the tiny profile, fold 0 (960 epochs). Not trained on patient data; not for clinical use."

# The MONAI Application Package: build context and manifests always, the image where Docker or Podman runs.
map: setup
	$(PY) -m deploy.map --model $(or $(MODEL),models/renalnode-demo) --out build/map

# The main job end to end on this machine: local Orthanc + node with the demo model, a phantom study
# through auto-routing, results back in Orthanc, a findings table, the study in OHIF with its SEG
# (link and screenshot); everything stopped at the end.
demo: setup
	$(PY) -m deploy.demo $(DEMO_ARGS)
