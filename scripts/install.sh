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
# Headless Chromium and its driver for the browser test (tests/test_web.py); without them
# that test is skipped. Installed only when missing, and only as root or with sudo -n.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
        as_root=""
        [ "$(id -u)" = 0 ] || as_root="sudo -n"
        if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null \
            || ! $as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get -qq install -y chromium chromium-driver >/dev/null; then
            echo "note: could not install chromium/chromium-driver; browser tests will be skipped" >&2
        fi
    else
        echo "note: chromium/chromedriver not found (needs root and apt-get); browser tests will be skipped" >&2
    fi
fi
