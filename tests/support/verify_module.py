"""A module of the product's verify suite (tests/verify), imported under a private name."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "verify"


def load_verify_module(name: str) -> types.ModuleType:
    """``tests/verify/<name>.py`` as a fresh module (its ``conftest`` imports resolve)."""
    sys.path.insert(0, str(SUITE))
    try:
        spec = importlib.util.spec_from_file_location(
            f"pgsteady_suite_{name}", SUITE / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SUITE))
    return module
