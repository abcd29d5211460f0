"""The layout shows the architecture: domain packages (inference/, training/, drawings/, store/) sit
below the two interfaces (api/, ui/), which do not import each other; app.py alone assembles; and
no module imports another that imports it back (at module level or late, inside a function)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "ui", "inference", "training", "drawings", "store")
DOMAIN = ("inference", "training", "drawings", "store")
INTERFACES = ("api", "ui")


def project_imports() -> dict[str, set[str]]:
    """module name -> the project modules it imports, anywhere in its body."""
    graph: dict[str, set[str]] = {}
    modules = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
               for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    for module in modules:
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            # A package's __init__ re-exporting its own modules is how packages work, not a circle.
            targets.update(name for name in names if name in modules and name != module
                           and not name.startswith(module + "."))
        graph[module] = targets
    return graph


def test_domain_packages_never_import_an_interface():
    graph = project_imports()
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() if module.split(".")[0] in DOMAIN
                    for target in targets if target.split(".")[0] in INTERFACES)
    assert upward == []


def test_the_interfaces_do_not_import_each_other():
    graph = project_imports()
    across = sorted(f"{module} -> {target}" for module, targets in graph.items() if module.split(".")[0] in INTERFACES
                    for target in targets if target.split(".")[0] in INTERFACES
                    and target.split(".")[0] != module.split(".")[0])
    assert across == []


def test_no_module_imports_one_that_imports_it_back():
    graph = project_imports()
    cycles = set()

    def visit(module: str, path: list[str]) -> None:
        for target in graph.get(module, ()):
            if target in path:
                cycle = path[path.index(target):]
                start = cycle.index(min(cycle))
                cycles.add(" -> ".join(cycle[start:] + cycle[:start]))
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert sorted(cycles) == []
