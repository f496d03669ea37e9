"""Every ```python block of README.md runs as written, pasted into a file of its own (issue 17).

A block that needs something a test machine does not have starts a line with ``# needs: gpu``,
``# needs: robot`` or ``# needs: network`` (a visible marker for readers too); such blocks are skipped,
every other block must run in a fresh interpreter from an empty folder and exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NEEDS = re.compile(r"^#\s*needs:\s*(\S+)", re.M)
ALLOWED_NEEDS = ("gpu", "robot", "network")


def readme_python_blocks() -> list[tuple[int, str]]:
    """(line number of the opening fence, code) for every ```python block of README.md."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


BLOCKS = readme_python_blocks()


def test_readme_has_python_blocks_and_only_known_skip_markers():
    assert len(BLOCKS) >= 4
    for line, code in BLOCKS:
        for need in NEEDS.findall(code):
            assert need.rstrip(",;:") in ALLOWED_NEEDS, (
                f"README.md line {line}: '# needs: {need}' is not a reason to skip; use one of {ALLOWED_NEEDS}")


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_runs_as_written(line, code, tmp_path):
    need = NEEDS.search(code)
    if need:
        pytest.skip(f"README.md line {line} needs a {need.group(1).rstrip(',;:')}")
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README.md line {line} failed:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
