"""cdx/infra/setup-system.sh installs Java 17 and Maven the way it installs PostgreSQL.

The script runs with a PATH holding only the tools it uses plus a recording ``apt-get``: no
package is really installed. The stub "installs" by dropping ``java``/``mvn`` scripts into the
PATH, so the script's final checks see what a real install leaves behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "cdx" / "infra" / "setup-system.sh"
TOOLS = ("bash", "ls", "grep", "sed", "head", "id", "ldconfig", "cat", "chmod", "cut")

APT_GET = """#!/bin/bash
echo "$*" >> "{log}"
if [ "$1" = install ]; then
  for pkg in "$@"; do
    if [ -f "{pkgs}/$pkg" ]; then cat "{pkgs}/$pkg" > "{bin}/$(head -n1 "{pkgs}/$pkg" | cut -c3-)"; fi
  done
  chmod +x "{bin}"/*
fi
"""
JAVA_17 = '# java\necho \'openjdk version "17.0.15" 2025-04-15\' >&2\n'
MAVEN = "# mvn\n"


def _sandbox(tmp_path: Path, java_version: str | None, mvn: bool) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if real:
            (bin_dir / tool).symlink_to(real)
    log = tmp_path / "apt.log"
    pkgs = tmp_path / "pkgs"
    pkgs.mkdir()
    (pkgs / "openjdk-17-jre-headless").write_text(JAVA_17)
    (pkgs / "maven").write_text(MAVEN)
    for name in ("apt-get", "sudo"):
        body = APT_GET.format(log=log, bin=bin_dir, pkgs=pkgs) if name == "apt-get" else '#!/bin/bash\nexec "$@"\n'
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "pg_ctl").write_text("#!/bin/bash\n")
    (bin_dir / "pg_ctl").chmod(0o755)
    if java_version:
        (bin_dir / "java").write_text(f'#!/bin/bash\necho \'openjdk version "{java_version}"\' >&2\n')
        (bin_dir / "java").chmod(0o755)
    if mvn:
        (bin_dir / "mvn").write_text("#!/bin/bash\n")
        (bin_dir / "mvn").chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}, log


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("bash") or "/bin/bash", str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=60)


def _installed(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith("install")]


def test_installs_java_and_maven_when_missing(tmp_path: Path) -> None:
    env, log = _sandbox(tmp_path, java_version=None, mvn=False)
    result = _run(env)
    assert result.returncode == 0, result.stderr
    [install] = _installed(log)
    assert "openjdk-17-jre-headless" in install.split()
    assert "maven" in install.split()


def test_replaces_a_java_older_than_17(tmp_path: Path) -> None:
    env, log = _sandbox(tmp_path, java_version="1.8.0_392", mvn=True)
    result = _run(env)
    assert result.returncode == 0, result.stderr
    [install] = _installed(log)
    assert "openjdk-17-jre-headless" in install.split()
    assert "maven" not in install.split()


def test_installs_nothing_when_everything_is_present(tmp_path: Path) -> None:
    env, log = _sandbox(tmp_path, java_version="17.0.15", mvn=True)
    result = _run(env)
    assert result.returncode == 0, result.stderr
    for install in _installed(log):
        assert "openjdk-17-jre-headless" not in install and "maven" not in install

