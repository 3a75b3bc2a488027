"""The wheel plan: `cibuildwheel --print-build-identifiers` with the
project's [tool.cibuildwheel] lists exactly the intended builds.

cibuildwheel is installed (the version wheels.yml pins) into a venv under
build/; without PyPI the test skips, saying so."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"

PYTHONS = ["cp39", "cp310", "cp311", "cp312", "cp313", "cp314", "cp313t", "cp314t"]
PLATFORMS = {
    "linux": [f"{libc}_{arch}" for libc in ("manylinux", "musllinux") for arch in ("x86_64", "aarch64")],
    "windows": ["win_amd64", "win_arm64"],
    "macos": ["macosx_x86_64", "macosx_arm64"],
}


def pinned_version() -> str:
    m = re.search(r"pypa/cibuildwheel@v([0-9.]+)", WORKFLOW.read_text())
    assert m, "wheels.yml must pin pypa/cibuildwheel@vX.Y.Z"
    return m.group(1)


@pytest.fixture(scope="module")
def cibuildwheel():
    if not WORKFLOW.exists():
        pytest.skip("no .github/workflows/wheels.yml here (testing an installed package)")
    version = pinned_version()
    venv = ROOT / "build" / f"cibuildwheel-{version}"
    exe = venv / "bin" / "cibuildwheel"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"cibuildwheel=={version}"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.skip(f"cannot install cibuildwheel=={version}: {proc.stderr.strip()[-300:]}")
    return exe


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_build_identifiers(cibuildwheel, platform):
    proc = subprocess.run([str(cibuildwheel), "--print-build-identifiers", "--platform", platform,
                           "--archs", "all"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split()
    expected = {f"{py}-{plat}" for py in PYTHONS for plat in PLATFORMS[platform]}
    assert len(listed) == len(set(listed))
    assert set(listed) == expected, (sorted(set(listed) - expected), sorted(expected - set(listed)))
