"""deploy/install-prometheus.sh, which `make install` runs, in its two quiet paths.

(The install path itself runs apt-get as root; it is exercised by `make install` on a
fresh machine, not here.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deploy_support import DEPLOY

SCRIPT = DEPLOY / "install-prometheus.sh"


def _bin_with(tmp_path: Path, *names: str) -> Path:
    """A PATH directory holding only `names` (real binaries or fakes)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in names:
        real = shutil.which(name)
        target = directory / name
        if real:
            target.symlink_to(real)
        else:
            target.write_text("#!/bin/sh\nexit 0\n")
            target.chmod(0o755)
    return directory


def _run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/bash", str(SCRIPT)], env={"PATH": str(path)}, capture_output=True,
                          text=True, timeout=60)


def test_does_nothing_when_prometheus_is_there(tmp_path: Path) -> None:
    result = _run(_bin_with(tmp_path, "promtool", "prometheus", "id", "env"))
    assert result.returncode == 0 and result.stdout == result.stderr == ""


def test_says_what_to_do_without_apt(tmp_path: Path) -> None:
    result = _run(_bin_with(tmp_path, "id", "env"))
    assert result.returncode == 0
    assert "apt-get is not available" in result.stderr and "tests/deploy will fail" in result.stderr


def test_script_is_valid_bash() -> None:
    assert subprocess.run(["/bin/bash", "-n", str(SCRIPT)], timeout=30).returncode == 0
    assert os.access(SCRIPT, os.X_OK)
