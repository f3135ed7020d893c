"""bench/s3/run.py stays runnable: --help always, a --quick Walrus-only run when slow tests run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "bench" / "s3" / "run.py"


def test_bench_help() -> None:
    out = subprocess.run([sys.executable, str(RUN), "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "--quick" in out and "moto" in out


@pytest.mark.slow
def test_bench_quick_walrus_only(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--only", "walrus", "--out",
                           str(out), "--workdir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    assert "| PUT 64 MiB x1 client | MiB/s |" in report
    assert "loopback TCP" in report and "ListObjectsV2" in report
