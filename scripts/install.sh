#!/usr/bin/env bash
# Create .venv and install SpanQA with its CPU PyTorch and development tools.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# The `cpu` extra pins torch==2.13.0, the CPU build; with a CUDA build of torch already
# in the environment, drop it: pip install -e '.[dev]'.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[cpu,dev]' \
    2> >(grep -v "^WARNING: Location" >&2)
