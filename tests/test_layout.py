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


PROJECT = PACKAGE.parent
PACKAGES = ("lightning_aae", "callbacks", "experiments")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set:
    """Every project module `path` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (PROJECT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in modules and m != name} for name, path in modules.items()}


def test_the_library_never_imports_the_lab():
    offenders = {m: sorted(i for i in deps if i.startswith("experiments"))
                 for m, deps in _graph().items() if not m.startswith("experiments")}
    assert not {m: d for m, d in offenders.items() if d}


def test_no_module_imports_one_that_imports_it_back():
    graph = _graph()
    # a package's __init__ importing its own modules is how a package is built, not a cycle
    edges = {m: {d for d in deps if not (m in PACKAGES and d.startswith(m + "."))} for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_config_schema_imports_nothing_from_the_project():
    assert not _graph()["lightning_aae.schema"]
