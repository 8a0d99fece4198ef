"""Every third-party package the installed code imports at module level is a declared core dependency."""
import ast
import importlib.metadata as md
import re
import sys
import tomllib

from scraplab.locations import repo_root


def _top_level_imports(path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_module_level_imports_are_declared_core_dependencies():
    root = repo_root()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    dists = md.packages_distributions()
    files = [*(root / "src" / "scraplab").rglob("*.py"), *(root / "synths").rglob("*.py")]
    missing = {}
    for f in files:
        for name in _top_level_imports(f) - set(sys.stdlib_module_names) - {"scraplab", "__future__"}:
            owners = {_norm(d) for d in dists.get(name, [name])}
            if not owners & declared:
                missing.setdefault(name, []).append(str(f.relative_to(root)))
    assert not missing, f"imported at module level but not in [project] dependencies: {missing}"
