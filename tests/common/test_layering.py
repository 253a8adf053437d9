"""The package's layers, read from its source: no import cycle, and ``xlmr.common`` free of every framework.

xlmr is layered: ``xlmr.common`` (no framework) < the backends ``xlmr.pt|tf|flax`` < ``xlmr.backends`` and
``xlmr.cli`` (drivers). Imports inside functions count too: a cycle hidden in a function is still a cycle, and a
framework imported on first use is still imported. Each check names what breaks it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

import xlmr

PACKAGE_DIR = os.path.dirname(os.path.abspath(xlmr.__file__))
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax", "orbax", "tf_keras", "transformers")
ABOVE_COMMON = ("xlmr.pt", "xlmr.tf", "xlmr.flax", "xlmr.backends", "xlmr.cli")
FORBIDDEN_IN_COMMON = FRAMEWORKS + ABOVE_COMMON
# (module, function, imported module) that may name a framework anyway. Keep it short and say why.
ALLOWED_IN_COMMON = {
    # HF's tokenizer API: ``tok(..., return_tensors="pt"|"tf"|"jax")`` hands back that framework's tensors, so the
    # conversion imports the framework the caller named, when called. Importing the tokenizers loads none.
    ("xlmr.common.tokenization.base", "_tensor_converter", "torch"),
    ("xlmr.common.tokenization.base", "_tensor_converter", "tensorflow"),
    ("xlmr.common.tokenization.base", "_tensor_converter", "jax.numpy"),
}


def modules() -> dict[str, str]:
    """{dotted module name: file} for every module of the package (a package is its __init__.py)."""
    found = {}
    root = os.path.dirname(PACKAGE_DIR)
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and os.path.exists(os.path.join(folder, d, "__init__.py")))
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


class Import:
    """One import found in the source: the module it names, and where."""

    def __init__(self, target: str, file: str, line: int, dynamic: bool = False, function: str = ""):
        self.target, self.file, self.line, self.dynamic, self.function = target, file, line, dynamic, function

    def __repr__(self) -> str:
        return f"{os.path.relpath(self.file, os.path.dirname(PACKAGE_DIR))}:{self.line} imports {self.target}"


def _literal_prefix(node: ast.expr) -> tuple[str, bool] | None:
    """A string argument's text (complete=True) or, for an f-string, its text up to the first placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value, True
    if isinstance(node, ast.JoinedStr):
        prefix = ""
        for part in node.values:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                return prefix, False
            prefix += part.value
        return prefix, True
    return None


def imports(name: str, file: str) -> list[Import]:
    """Every import in ``file`` (module ``name``), at any depth: ``import``, ``from ... import`` (relative ones
    resolved, ``from pkg import submodule`` naming the submodule) and ``importlib.import_module`` / ``__import__``
    calls, whose argument is kept as its literal text or f-string prefix (``dynamic``). Each is tagged with the
    function it sits in ("" at module level)."""
    is_package = file.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []
    functions: list[str] = []

    def add(target: str, node: ast.AST, dynamic: bool = False) -> None:
        found.append(Import(target, file, node.lineno, dynamic, functions[-1] if functions else ""))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in MODULES else base, node)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                literal = _literal_prefix(node.args[0]) if node.args else None
                if literal is None:
                    add("<not a literal>", node, dynamic=True)
                else:
                    add(literal[0], node, dynamic=not literal[1])
        inside = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if inside:
            functions.append(node.name)
        for child in ast.iter_child_nodes(node):
            visit(child)
        if inside:
            functions.pop()

    visit(ast.parse(open(file, encoding="utf-8").read(), file))
    return found


def graph() -> dict[str, set[str]]:
    """xlmr module -> the xlmr modules it imports (the deepest module an import names)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, file in MODULES.items():
        for imp in imports(name, file):
            target = imp.target
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if imp.dynamic and imp.target.endswith("."):
                # f"xlmr.{backend}": some submodule named at run time. Like a static import of a submodule, it
                # draws no edge to the package itself (every import runs the parents' __init__ first).
                continue
            if target:
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None; a depth-first search over the modules in sorted order."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def forbidden(target: str, dynamic: bool) -> bool:
    """Whether ``target`` is (or, for an f-string prefix, could be) a framework or a layer above common."""
    if target == "<not a literal>":
        return True
    for name in FORBIDDEN_IN_COMMON:
        if target == name or target.startswith(name + "."):
            return True
        if dynamic and name.startswith(target):
            return True
    return False


# ------------------------------------------------------------------------------------------------ the checker
def test_the_import_walker_sees_imports_inside_functions_relative_imports_and_importlib(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(
        "import importlib\n"
        "def f(kind):\n"
        "    from . import config\n"
        "    from ..common import weights\n"
        "    import jax.numpy\n"
        "    importlib.import_module(f'xlmr.{kind}')\n"
        "    __import__('torch')\n"
        "    importlib.import_module(kind)\n")
    found = [(i.target, i.dynamic) for i in imports("xlmr.common.probe", str(source))]
    assert {i.function for i in imports("xlmr.common.probe", str(source))} == {"", "f"}
    assert found == [("importlib", False), ("xlmr.common.config", False), ("xlmr.common.weights", False),
                     ("jax.numpy", False), ("xlmr.", True), ("torch", False), ("<not a literal>", True)]
    assert all(forbidden(t, d) for t, d in found[3:]) and not any(forbidden(t, d) for t, d in found[:3])
    assert not forbidden("xlmr.common.checkpoint.", True)


def test_find_cycle_names_a_cycle_through_every_module_on_it():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


# ------------------------------------------------------------------------------------------------ the package
def test_the_walk_finds_the_layers():
    assert {"xlmr", "xlmr.common.config", "xlmr.pt.models", "xlmr.tf.models", "xlmr.flax.models", "xlmr.backends",
            "xlmr.cli.main", "xlmr.common.checkpoint"} <= set(MODULES)


def test_no_import_cycle_among_xlmr_modules_including_imports_inside_functions():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_xlmr_common_names_no_framework_and_no_higher_layer_in_any_import_statement_or_importlib_call():
    problems = [repr(imp) for name, file in MODULES.items() if name.startswith("xlmr.common")
                for imp in imports(name, file) if forbidden(imp.target, imp.dynamic)
                and (name, imp.function, imp.target) not in ALLOWED_IN_COMMON]
    assert not problems, "\n".join(problems)


def _loaded_after(code: str) -> list[str]:
    """The forbidden modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (code + "\nimport sys\n"
             f"names = {FORBIDDEN_IN_COMMON!r}\n"
             "print(sorted(m for m in sys.modules if any(m == n or m.startswith(n + '.') for n in names)))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(PACKAGE_DIR)]
                                                         + os.environ.get("PYTHONPATH", "").split(os.pathsep))}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return eval(result.stdout.strip().splitlines()[-1])


def test_importing_every_module_of_xlmr_common_loads_no_framework_and_no_higher_layer():
    names = sorted(m for m in MODULES if m.startswith("xlmr.common"))
    assert len(names) > 10
    code = "import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names)
    assert _loaded_after(code) == []


def test_import_xlmr_loads_no_framework():
    loaded = _loaded_after("import xlmr\nassert xlmr.XLMRobertaConfig")
    assert not [m for m in loaded if m.split(".")[0] in FRAMEWORKS], loaded


@pytest.mark.parametrize("extra", ["", "xlmr.backends.installed_backends()\n"])
def test_the_drivers_import_no_framework_until_they_run_one(extra):
    loaded = _loaded_after("import xlmr.backends, xlmr.cli.main\nxlmr.cli.main.build_parser()\n" + extra)
    assert not [m for m in loaded if m.split(".")[0] in FRAMEWORKS], loaded
