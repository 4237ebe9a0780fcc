"""Which module may import which: the trainer does not reach into storage."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORAGE = ("mnist_core.checkpoints", "mnist_core.drawing_store", "mnist_core.starting")


def test_importing_the_trainer_loads_no_storage_module():
    # checkpoints and drawings import train (TrainConfig, RunResult): train importing them back was a circle.
    code = "import sys, mnist_core.train; print(sorted(m for m in sys.modules if m.startswith('mnist_core.')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout
    assert "mnist_core.train" in loaded
    for module in STORAGE:
        assert f"'{module}'" not in loaded, loaded


def test_the_trainer_imports_no_storage_module_even_inside_a_function():
    # A function-level import would hide the circle from the check above until that function ran.
    tree = ast.parse((ROOT / "mnist_core" / "train.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = "mnist_core." if node.level else ""
            imported.add(base + (node.module or ""))
            imported.update(base + alias.name for alias in node.names if not node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not imported & set(STORAGE), sorted(imported & set(STORAGE))
