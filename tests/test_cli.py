"""The `spanqa` command's help comes without loading the model stack."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "faiss", "sentence_transformers", "onnxruntime", "openvino")
PROBE = """
import sys
from spanqa.api.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("loaded:" + ",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("argv", [["--help"], ["reader", "train", "--help"], ["index", "build",
                                  "--help"], ["serve", "--help"], ["pretrain", "--help"],
                                  ["ask", "--help"], ["search", "--help"], ["demo", "--help"]])
def test_help_imports_no_model_library(argv):
    """Every parser is built from torch-free modules: help text and argument errors appear
    at once, and a missing GPU library cannot break `--help`."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
                         capture_output=True, text=True, timeout=120, check=True)
    loaded = out.stdout.rsplit("loaded:", 1)[1].strip()
    assert loaded == "", f"spanqa {' '.join(argv)} imported {loaded}"
