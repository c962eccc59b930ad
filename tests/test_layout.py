"""The package stays easy to read: small classes and functions, each name list kept in one registry."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_aae"
MAX_CLASS, MAX_FUNCTION = 160, 50


def _sizes():
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.name}:{node.name}", isinstance(node, ast.ClassDef), node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("name, is_class, lines", list(_sizes()), ids=lambda v: str(v))
def test_no_class_over_160_lines_and_no_function_over_50(name, is_class, lines):
    assert lines <= (MAX_CLASS if is_class else MAX_FUNCTION), f"{name} has {lines} lines"


def test_config_reads_every_name_list_from_its_registry():
    from callbacks.figures import FIGURES
    from lightning_aae.config import load_config
    from lightning_aae.priors import PRIORS
    from lightning_aae.variants import VARIANTS

    source = (PACKAGE / "config.py").read_text()
    for names in (VARIANTS, PRIORS, FIGURES):
        assert not any(f'"{a}", "{b}"' in source for a, b in zip(list(names), list(names)[1:])), \
            "a registry's names are listed again in config.py"
    assert list(load_config(None).callbacks.figures.kinds) == list(FIGURES)
