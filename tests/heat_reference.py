"""The heat model's reference implementations (SOLWEIG, supy/SUEWS) in their own environment.

They live in ``.venv-ref`` (``make test`` installs it from ``tests/reference/requirements.txt``),
never in the package's environment: SOLWEIG is GPL-3.0 and supy pins old libraries. A test runs a
script of ``tests/reference/`` there as a separate process, which writes its results to an ``.npz``
file the test compares with our kernels on the same inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
SCRIPTS = ROOT / "tests" / "reference"


def reference_python(module: str) -> Path:
    """The reference environment's python, with ``module`` importable there; else skip, saying why."""
    if not REF_PYTHON.exists():
        pytest.skip(f"reference environment .venv-ref missing (make test installs {module} there)")
    probe = subprocess.run([str(REF_PYTHON), "-c", f"import {module}"], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    if probe.returncode:
        pytest.skip(f"{module} does not import in .venv-ref: {probe.stderr.strip()[-200:]}")
    return REF_PYTHON


def run_reference(script: str, *args: str, module: str, timeout: float = 900.0) -> None:
    """Run ``tests/reference/<script>`` with the reference python; fail with its output on error."""
    python = reference_python(module)
    env = dict(os.environ, SOLWEIG_NO_GPU="1", PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="heat-reference-") as cwd:  # supy writes a log there
        proc = subprocess.run([str(python), str(SCRIPTS / script), *args], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=cwd)  # fmt: skip
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise AssertionError(f"reference script {script} failed with status {proc.returncode}")
