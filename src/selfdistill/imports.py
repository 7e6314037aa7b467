"""Which library files a script or module runs: the import graph of ``selfdistill``, read from the source.

A rule lists the modules its script imports (directly or not) as inputs, so editing a module reruns exactly the
steps that run it; a training checkpoint records their digest, so it never resumes under changed training code.
Only the standard library is imported.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "selfdistill"
PACKAGE_DIR = Path(__file__).resolve().parent


def _statements(body: list[ast.stmt]):
    """Every statement in ``body`` and in the blocks nested in it (functions, classes, if/try/with/for bodies); an
    import is a statement, so the expressions, most of a module's tree, are never visited."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, None) or [])


def _imported_modules(source: Path) -> set[str]:
    """Names of the ``selfdistill`` modules ``source`` imports anywhere in its code (also inside functions)."""
    inside_package = source.resolve().parent == PACKAGE_DIR
    found = set()
    for node in _statements(ast.parse(source.read_text(), filename=str(source)).body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and inside_package:
            base = f"{PACKAGE}.{node.module}" if node.module else PACKAGE
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE:
                # `from selfdistill.io import x` names x, a function; `from selfdistill import io` names a module
                found.add(parts[1] if len(parts) > 1 and (PACKAGE_DIR / f"{parts[1]}.py").is_file() else "__init__")
    return found


@functools.cache
def _library_imports(module: str) -> frozenset[str]:
    """:func:`_imported_modules` of one library module, read once per process: planning walks the graph from every
    rule's script, and the scripts share most of their modules."""
    return frozenset(_imported_modules(PACKAGE_DIR / f"{module}.py"))


def module_files(source: str | Path) -> list[Path]:
    """The library modules that running ``source`` (a script or a library module) executes: its ``selfdistill``
    imports and theirs, transitively, plus the package's ``__init__`` (importing any submodule runs it). Sorted."""
    todo, seen = list(_imported_modules(Path(source))), set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += _library_imports(module)
    if Path(source).resolve().parent == PACKAGE_DIR:
        seen.add(Path(source).stem)
    if seen:
        seen.add("__init__")
    return sorted(PACKAGE_DIR / f"{module}.py" for module in seen)
