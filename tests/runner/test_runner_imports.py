"""The runner does not import the devices: devices import the runner (its path, its job
checks), so an import back would make the two one tangle that cannot be loaded or
changed apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def _runtime_imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The harness modules a module imports when it runs (in functions too, but not for
    type checking only), each with the packages it loads on the way."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` loads a, and a.b too when b is a module.
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in found if name.startswith("harness.") or name == "harness"}


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        imported = _runtime_imports(tree, module, path.name == "__init__.py")
        graph[module] = {name for name in imported if name in files and name != module}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for name in graph[todo.pop()]:
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_the_graph_sees_the_devices_importing_the_runner() -> None:
    """The check below can fail: the edge it would close a cycle with is found."""
    graph = _import_graph()
    assert "harness.runner" in graph["harness.devices.local"]
    assert "harness.runner.job" in graph["harness.devices.local"]
    assert "harness.devices.base" in graph["harness.suite.walk"] | _reachable(
        graph, "harness.suite.walk"
    )


def test_no_runner_module_reaches_a_devices_module() -> None:
    graph = _import_graph()
    runner = sorted(m for m in graph if m == "harness.runner" or m.startswith("harness.runner."))
    assert "harness.runner.trials" in runner and "harness.runner.job" in runner
    reached = {
        module: sorted(
            m for m in _reachable(graph, module) if m.split(".")[:2] == ["harness", "devices"]
        )
        for module in runner
    }
    assert reached == {module: [] for module in runner}


def test_importing_every_runner_module_loads_no_device_module() -> None:
    code = (
        "import pkgutil, sys, harness.runner\n"
        "for info in pkgutil.iter_modules(harness.runner.__path__):\n"
        "    __import__('harness.runner.' + info.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('harness.devices')))\n"
        "print('harness.runner.trials' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[]", "True"]
