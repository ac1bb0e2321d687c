#!/usr/bin/env bash
# Headless Chromium and its driver for the browser tests (tests/test_web.py), which
# scripts/test.sh installs and the demo does not need. Without them those tests are skipped,
# and fail under CI (where $CI is set). Installed only when missing, and only as root or
# with sudo -n.
set -euo pipefail
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
        as_root=""
        [ "$(id -u)" = 0 ] || as_root="sudo -n"
        if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null \
            || ! $as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get -qq install -y chromium chromium-driver >/dev/null; then
            echo "note: could not install chromium/chromium-driver; browser tests will be skipped (and fail under CI)" >&2
        fi
    else
        echo "note: chromium/chromedriver not found (needs root and apt-get); browser tests will be skipped (and fail under CI)" >&2
    fi
fi
