"""The proxies plugin fails a test, never skips it, when HAProxy or NGINX cannot be installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import proxies


def test_a_failed_install_fails_with_the_scripts_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "install-proxies"
    script.write_text("#!/bin/sh\necho 'install-proxies: no apt-get here' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(proxies, "INSTALL_SCRIPT", script)
    monkeypatch.setattr(proxies, "ROOT", tmp_path)
    with pytest.raises(pytest.fail.Exception) as exc:
        proxies._ensure_proxies("haproxy", lambda: False)
    assert "haproxy is not installed" in str(exc.value)
    assert "no apt-get here" in str(exc.value) and "exit 1" in str(exc.value)


def test_nothing_runs_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxies, "INSTALL_SCRIPT", Path("/nonexistent"))
    proxies._ensure_proxies("nginx", lambda: True)
