"""No private name crosses a file in odenet/: a ``_name`` defined in one module is neither imported
nor reached as an attribute (``obj._name``) from another. Run by .ci/run; exits 1 and lists each
crossing as file:line.

A private name is one odenet defines: a module-level ``_function``, ``_Class`` or ``_CONSTANT``, a
method or class attribute ``_name``, or an instance attribute assigned as ``self._name``. Torch's
own private attributes (``tensor._version``, ``module._buffers``) are not odenet's and not counted,
unless odenet defines the same name somewhere, in which case the file that uses it must define it
too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "odenet"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    if target.value.id in ("self", "cls"):
                        names.add(target.attr)
        elif isinstance(node, ast.AnnAssign):
            target = node.target
            if isinstance(target, ast.Name):
                names.add(target.id)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                names.add(target.attr)
    return {n for n in names if _private(n)}


def crossings(root: Path = ROOT) -> list[str]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(root.rglob("*.py"))}
    defined = {path: _defined(tree) for path, tree in trees.items()}
    everywhere = set().union(*defined.values())
    found = []
    for path, tree in trees.items():
        own = defined[path]
        where = path.relative_to(root.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("odenet"):
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{where}:{node.lineno}: imports {alias.name} from {node.module}")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                if node.attr in everywhere and node.attr not in own:
                    found.append(f"{where}:{node.lineno}: reaches {node.attr}, defined in another file")
    return found


def main() -> int:
    found = crossings()
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} private names cross a file in odenet/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
