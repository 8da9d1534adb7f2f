"""Layers point one way: base → networks → weights → engines → runtime → training → tools →
commands. Every ``import`` of an f2n module (at module level or inside a function: a deferred
import is still a dependency) must name a module of the same or a lower layer, and no modules
import each other in a loop. Read from the source with ``ast``: nothing is imported here.

An upper layer that must change a lower one registers itself into it (the fused RRDB op into
RRDBNet, the network check into the weight cache), never the reverse."""

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder → package, as pyproject.toml maps them
PACKAGES = {"core": "f2n", "runtime": "f2n.runtime", "training": "f2n.training", "export": "f2n.export",
            "cpp_ext": "f2n.cpp_ext", "eval": "f2n.eval", "benchmarks": "f2n.benchmarks"}
# lowest first; a module belongs to the layer of its longest matching prefix
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("f2n",)),  # errors, fileio, the resize and inner-loop maths every layer shares
    ("networks", ("f2n.nets",)),
    ("weights", ("f2n.weights",)),
    ("engines", ("f2n.export", "f2n.cpp_ext")),  # the SR engines, the fused op registered into RRDBNet
    ("runtime", ("f2n.runtime",)),
    ("training", ("f2n.training",)),
    ("tools", ("f2n.eval", "f2n.benchmarks")),
)
COMMANDS = len(LAYERS)  # every ``cli`` and ``__main__`` module: the top
COMMAND_NAMES = ("cli", "__main__")


@cache
def module_files() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [part for part in path.relative_to(ROOT / folder).with_suffix("").parts if part != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def layer_of(module: str) -> int:
    if module.rsplit(".", 1)[-1] in COMMAND_NAMES:
        return COMMANDS
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def layer_name(rank: int) -> str:
    return "commands" if rank == COMMANDS else LAYERS[rank][0]


def imports(path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every f2n module ``path`` imports; ``from f2n.x import y`` counts as
    f2n.x.y when that is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "f2n"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "f2n":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.append((node.lineno, child if child in known else node.module))
    return found


@cache
def import_graph() -> tuple[dict[str, list[tuple[int, str]]], dict[str, Path]]:
    files = module_files()
    known = set(files)
    return {module: imports(path, known) for module, path in files.items()}, files


def test_every_module_is_in_a_layer() -> None:
    assert all(layer_of(module) >= 0 for module in module_files())


def test_imports_point_down_the_layers() -> None:
    graph, files = import_graph()
    wrong = {f"{files[source].relative_to(ROOT)}:{line} ({layer_name(layer_of(source))}) imports {target} "
             f"({layer_name(layer_of(target))})"
             for source, targets in graph.items() for line, target in targets
             if layer_of(target) > layer_of(source)}
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_modules_import_each_other_in_a_loop() -> None:
    graph, _ = import_graph()
    edges = defaultdict(set)
    for source, targets in graph.items():
        edges[source].update(target for _, target in targets if target in graph and target != source)
    loops = strongly_connected(edges)
    assert not loops, "import loops:\n" + "\n".join(" → ".join(sorted(loop)) for loop in loops)


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in edges.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in list(edges):
        if node not in index:
            visit(node)
    return components


@pytest.mark.parametrize("source, target, wrong", [
    ("f2n.nets.rrdbnet", "f2n.cpp_ext", True), ("f2n.export.engines", "f2n.runtime.types", True),
    ("f2n.runtime.build", "f2n.export.engines", False), ("f2n.weights.cli", "f2n.runtime.cli", False),
    ("f2n.export.measure", "f2n.benchmarks.timing", True)])
def test_the_rule_itself(source: str, target: str, wrong: bool) -> None:
    assert (layer_of(target) > layer_of(source)) is wrong


def installed_module_files() -> dict[str, Path]:
    """The modules ``pip install`` ships: the files of the packages pyproject.toml lists."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config["package-dir"]
    shipped = {}
    for package in config["packages"]:
        root = next(name for name in sorted(folders, key=len, reverse=True) if package == name or package.startswith(name + "."))
        folder = ROOT / folders[root] / Path(*package[len(root):].strip(".").split(".") if package != root else ())
        shipped.update({f"{package}.{path.stem}": path for path in folder.glob("*.py")})
    return shipped


def test_the_installed_package_imports_no_test_tools() -> None:
    """pytest and its plugins are dev dependencies: test and benchmark glue stays in the checkout."""
    wrong = []
    for module, path in installed_module_files().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{module} imports {name}" for name in names if name.split(".")[0] in ("pytest", "_pytest")]
    assert len(installed_module_files()) > 100 and not wrong, wrong


# The face stage (detect, align, the priors and their conventions, regions, patches, restore,
# stage) sits below the adaptation methods and the pipeline: it uses only itself and the
# runtime's shared pieces (a folder of its own later makes this the layout).
FACE_STAGE = ("face_detect", "face_align", "face_prior", "prior_conventions", "face_regions", "face_patches",
              "face_restore", "face_stage", "torch_prior", "onnx_prior", "debug_images")
RUNTIME_SHARED = ("types", "images", "report", "sanity")


def test_the_face_stage_imports_nothing_of_the_runtime_above_it() -> None:
    graph, files = import_graph()
    allowed = {f"f2n.runtime.{name}" for name in FACE_STAGE + RUNTIME_SHARED}
    wrong = {f"{files[f'f2n.runtime.{name}'].relative_to(ROOT)}:{line} imports {target}"
             for name in FACE_STAGE for line, target in graph[f"f2n.runtime.{name}"]
             if target.startswith("f2n.runtime.") and target not in allowed}
    assert not wrong, "\n".join(sorted(wrong))
