"""Where SpanQA writes by default: the checkout's data/, else the user's data directory;
where it and its tests look for the shared SQuAD files."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, squad_file, squad_root

from spanqa.core import paths


def test_checkout_keeps_its_data_beside_the_code(monkeypatch):
    monkeypatch.delenv("SPANQA_DATA", raising=False)
    assert paths.data_home() == paths.CHECKOUT / "data"


def test_installed_package_writes_to_the_user_data_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("SPANQA_DATA", raising=False)
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path / "site-packages")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.data_home() == tmp_path / "xdg" / "spanqa"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.data_home() == tmp_path / "home" / ".local" / "share" / "spanqa"


def test_environment_overrides_both(monkeypatch, tmp_path):
    monkeypatch.setenv("SPANQA_DATA", str(tmp_path))
    assert paths.data_home() == tmp_path


def test_tests_and_cli_look_for_squad_in_the_same_place(monkeypatch, tmp_path):
    from spanqa.core.paths import squad_dir

    monkeypatch.delenv("SPANQA_SQUAD_DIR", raising=False)
    assert squad_root() == squad_dir() == REPO.parent / "shared" / "squad"
    monkeypatch.setenv("SPANQA_SQUAD_DIR", str(tmp_path))
    assert squad_root() == squad_dir() == tmp_path


def test_a_missing_squad_file_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("SPANQA_SQUAD_DIR", str(tmp_path / "nowhere"))
    where = re.escape(f"dev-v1.1.json not found in {tmp_path / 'nowhere'}")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=where):
        squad_file("dev-v1.1.json")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match=where):
        squad_file("dev-v1.1.json")
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "dev-v1.1.json").write_text("{}")
    assert squad_file("dev-v1.1.json") == tmp_path / "nowhere" / "dev-v1.1.json"


@pytest.mark.skipif(not os.environ.get("SPANQA_TEST_WITHOUT_OPENVINO"),
                    reason="only in a run with SPANQA_TEST_WITHOUT_OPENVINO=1")
def test_a_run_without_openvino_cannot_import_it_here_or_in_a_subprocess():
    from spanqa.runtime.openvino import openvino_available

    assert not openvino_available()
    child = subprocess.run([sys.executable, "-c", "import openvino"], capture_output=True,
                           text=True)
    assert child.returncode != 0 and "SPANQA_TEST_WITHOUT_OPENVINO" in child.stderr
