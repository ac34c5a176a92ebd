"""The package's shape: stages import only from stages below them, no loops, no hidden imports.

Read from the source with ``ast`` (nothing is imported), so a violation names the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
#: Stage of each sub-package; a module may import its own stage or a lower one.
STAGES = {"core": 0, "judges": 1, "activations": 1, "data": 2, "steering": 2, "evaluation": 3, "viz": 3, "app": 4}
#: What a function body may import: heavy optional dependencies, each with a comment saying so.
LAZY_OK = {"kaleido", "choreographer", "datasets", "nltk", "langdetect", "if_verifiable", "transformer_lens.model_bridge",
           "plotly.offline", "http.client", "urllib.request", "peft", "accelerate"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, name: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out = []

    def visit(node, in_function: bool, in_type_checking: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            guarded = in_type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import) and not guarded:
                out.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not guarded:
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module
                out.append((module, child.lineno, in_function))
                if module.startswith("workbench"):  # `from workbench.x import submodule`
                    out.extend((f"{module}.{a.name}", child.lineno, in_function) for a in child.names)
            visit(child, nested, guarded)

    visit(tree, False, False)
    return out


MODULES = _modules()


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.get(parts[1]) if len(parts) > 1 else None


def test_every_module_lives_in_a_stage():
    loose = [m for m in MODULES if m.count(".") >= 1 and m.split(".")[1] not in STAGES and m != "workbench.__main__"]
    assert loose == [], f"modules outside the stage folders: {loose}"


def test_no_import_runs_up_a_stage():
    bad = []
    for name, path in MODULES.items():
        here = _stage(name)
        for module, line, _ in _imports(path, name):
            if module in MODULES and here is not None and (_stage(module) or 0) > here:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert bad == [], "imports that run back up a stage:\n" + "\n".join(bad)


def test_no_import_loops():
    graph = {name: {m for m, _, lazy in _imports(path, name) if m in MODULES and m != name and not lazy}
             for name, path in MODULES.items()}
    # a package's __init__ re-exports its children; an edge child -> own package is a loop in waiting
    state: dict[str, int] = {}
    loops = []

    def walk(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loops.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    own_package = [f"{n} -> {m}" for n, ms in graph.items() for m in ms
                   if n.startswith(m + ".") and m != "workbench" and not MODULES[n].name == "__init__.py"]
    assert own_package == [], f"modules that import their own package's __init__: {own_package}"
    assert loops == [], "import loops: " + "; ".join(" -> ".join(loop) for loop in loops)


def test_imports_inside_functions_are_only_heavy_optional_ones():
    bad = []
    for name, path in MODULES.items():
        if name == "workbench.app.cli":  # the CLI imports each subcommand's stage when it runs
            continue
        lines = path.read_text().splitlines()
        for module, line, lazy in _imports(path, name):
            if not lazy or module.split(".")[0] == "__future__":
                continue
            if not any(module == ok or module.startswith(ok + ".") for ok in LAZY_OK):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module} inside a function")
            elif "#" not in lines[line - 1] and "#" not in lines[line - 2]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: say why {module} is imported late")
    assert bad == [], "\n".join(bad)


#: How TransformerLens' bridge holds the Hugging Face model and the modules it wraps: names only
#: ``core`` may use (``LoadedModel.hf_model``, ``hf_config`` and ``core.models.module_name`` for the rest).
BRIDGE_INTERNALS = ("original_model", "_original_component", "original_component")


def test_only_core_reaches_into_the_bridge():
    bad = []
    for name, path in MODULES.items():
        if name.split(".")[1:2] == ["core"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            text = node.attr if isinstance(node, ast.Attribute) else node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and any(word in text for word in BRIDGE_INTERNALS):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} uses {text!r}")
    assert bad == [], "bridge internals outside core (use LoadedModel.hf_model / hf_config):\n" + "\n".join(bad)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_names_its_public_functions(stage):
    init = PACKAGE / stage / "__init__.py"
    tree = ast.parse(init.read_text())
    exported = [n for n in ast.walk(tree) if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    assert exported, f"workbench/{stage}/__init__.py has no __all__"
    assert ast.get_docstring(tree), f"workbench/{stage}/__init__.py has no docstring saying what the stage does"
