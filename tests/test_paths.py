"""Where SpanQA writes by default: the checkout's data/, else the user's data directory."""

from __future__ import annotations

from reader import paths


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
