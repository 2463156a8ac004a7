"""The package's shape, read from its source: imports flow one way, no cycles, and every
model kind's knowledge stays in its own module.

Data flows store -> models -> kinds -> train/infer -> catalog -> stats; these
checks parse every module's imports (type-checking-only imports excluded) so
a change that breaks the layering fails here, not in review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from surveyproc.kinds import get_kind, registered_kinds

PACKAGE = Path(__file__).resolve().parents[1] / "surveyproc"
#: Network classes of the built-in kinds and the names of their layers (state-dict keys):
#: only the kinds' own modules and the networks package may use them.
NETWORK_NAMES = {"SFNet", "DenseCNN", "BinnedDensity", "PCANet", "TopK", "VAEFlow",
                 "ConditionalChain", "Translator", "UNet"}
LAYER_STRINGS = ("head.weight", "head.bias", "topk", "pca_components")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str) -> set[str]:
    """surveyproc modules that ``module`` imports (at any depth of its code)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names]
            if node.module:  # ``from . import x`` does not import the package's own __init__
                names.append(prefix)
        found |= {n for n in names if n in MODULES}
    return found - {module}


GRAPH = {module: _imports(module) for module in MODULES}


def _reaches(start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        for nxt in GRAPH[node]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycles():
    cycles = [m for m in GRAPH if _reaches(m, m)]
    assert not cycles, f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize(("low", "high"), [
    ("surveyproc.models", "surveyproc.store"),
    ("surveyproc.models", "surveyproc.kinds"),
    ("surveyproc.stats", "surveyproc.infer"),
    ("surveyproc.stats", "surveyproc.train"),
    ("surveyproc.catalog", "surveyproc.kinds"),
    ("surveyproc.catalog", "surveyproc.infer"),
    ("surveyproc.infer", "surveyproc.train"),
    ("surveyproc.train", "surveyproc.infer"),
])
def test_a_layer_does_not_import_the_layers_after_it(low, high):
    offenders = sorted(f"{m} -> {t}" for m in GRAPH if _in(m, low)
                       for t in GRAPH[m] if _in(t, high))
    assert not offenders, offenders


@pytest.mark.parametrize(("a", "b"), [
    ("surveyproc.errors", "surveyproc.fs"),  # fs raises errors; errors uses redact, not fs
    ("surveyproc.train.distributed", "surveyproc.train.job"),  # both build on train.plan
    ("surveyproc.train.single", "surveyproc.train.job"),
    ("surveyproc.train.distributed", "surveyproc.train.single"),
    ("surveyproc.train.single", "surveyproc.train.distributed"),
])
def test_modules_that_must_not_import_another(a, b):
    assert not _reaches(a, b), f"{a} imports {b}"


def _code_constants(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node.lineno, node.value


@pytest.mark.parametrize("kind", registered_kinds())  # the built-ins, at collection
def test_only_a_kinds_own_module_names_it_or_its_layers(kind):
    own = type(get_kind(kind)).__module__
    problems = []
    for module, path in MODULES.items():
        if module == own or _in(module, "surveyproc.models"):
            continue
        tree = ast.parse(path.read_text())
        for line, text in _code_constants(tree):
            own_layers = module in {type(get_kind(k)).__module__ for k in registered_kinds()}
            if text == kind or (not own_layers and any(layer in text
                                                       for layer in LAYER_STRINGS)):
                problems.append(f"{module}:{line} names {text!r}")
        if _in(module, "surveyproc.kinds") and module != "surveyproc.kinds.base":
            continue  # a kind module may use its own network classes
        for node in ast.walk(tree):
            name = node.id if isinstance(node, ast.Name) else (
                node.attr if isinstance(node, ast.Attribute) else None)
            if name in NETWORK_NAMES:
                problems.append(f"{module}:{node.lineno} uses {name}")
    assert not problems, problems


def test_every_kind_module_registers_exactly_its_kind():
    builtin = {kind: type(get_kind(kind)).__module__ for kind in registered_kinds()
               if type(get_kind(kind)).__module__.startswith("surveyproc.")}
    assert set(builtin) >= {"sfnet", "dense_cnn", "pca", "binned_density"}
    for kind, module in builtin.items():
        assert module == f"surveyproc.kinds.{kind}", (kind, module)
