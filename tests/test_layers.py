"""The layer rule (docs/architecture.md): the shared core imports none of training, the app or the
node; operators import no training or node code; the node's metrics load no deep-learning stack.

Each check imports in a fresh interpreter, so modules loaded by other tests cannot hide or fake a
dependency.
"""
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import renalnode

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "holoscan", "nnunetv2", "monai")


def core_modules() -> list[str]:
    return sorted(f"renalnode.{m.name}" for m in pkgutil.walk_packages(renalnode.__path__)
                  if not m.name.startswith("nnunet_trainers.") and m.name != "__main__")


def loaded_after_import(*modules: str) -> set[str]:
    """Top-level package names in sys.modules after importing the given modules."""
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_core_module_list_is_the_whole_core():
    names = core_modules()
    assert {"renalnode.cli", "renalnode.ensemble", "renalnode.labels", "renalnode.model_package"} <= set(names)


def test_core_imports_no_training_app_or_node():
    loaded = loaded_after_import(*core_modules())
    assert not loaded & {"training", "app", "operators", "deploy"}, loaded & {"training", "app", "operators", "deploy"}


def test_operators_and_app_import_no_training_or_node():
    operators = sorted(f"operators.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "operators")]))
    loaded = loaded_after_import("app.app", *operators)
    assert not loaded & {"training", "deploy"}, loaded & {"training", "deploy"}


@pytest.mark.parametrize("module", ["deploy.node.metrics", "deploy.node.journal", "deploy.node.web"])
def test_node_monitoring_loads_no_deep_learning_stack(module):
    loaded = loaded_after_import(module)
    assert module.split(".")[0] in loaded  # the import really ran
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
