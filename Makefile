# renalnode: one-command setup and tests. Every target is safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := orthanc orthanc-dicomweb orthanc-python dcmtk dicom3tools
# Root installs Debian packages directly; anyone else goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages test phantoms clean-venv

setup: system-packages $(VENV)/.installed

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

# The stamp holds a hash of the pins, so editing requirements.txt or pyproject.toml rebuilds .venv.
$(VENV)/.installed: requirements.txt pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PY) -m pytest

# Example: make phantoms OUT=/tmp/phantoms CASES=3
phantoms: setup
	$(VENV)/bin/renalnode phantom --out $(or $(OUT),phantoms) --cases $(or $(CASES),3) --seed $(or $(SEED),0)

clean-venv:
	rm -rf $(VENV)
