#!/usr/bin/env bash
# Install, then run the main job: fine-tune a small reader offline and answer questions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/spanqa demo "$@"
