#!/usr/bin/env bash
# Install if needed, lint, and run the test suite (extra arguments go to pytest,
# e.g. `-m slow` for the tests that train real weights).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install-browser.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
