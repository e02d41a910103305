"""Imports go one way: no cycle among the modules of job/ and submit/, read with ``ast``.

An import inside a function is an edge like any other (a cycle held apart by one
is still a cycle), except one that defers a heavy optional dependency: only
:data:`DEFERRABLE` (YAML, the Azure SDK, and what only rare paths of the job need, 3-8 ms of
every start: the compiler runs of the token kernel, ``shutil``) may be imported inside a
function.
"""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, clean_environ

PACKAGES = ("job", "submit")
DEFERRABLE = ("yaml", "azure",
              "subprocess", "tempfile",  # the token kernel's compiler: only when it compiles
              "shutil")  # that, and a folder or file that the fast ways could not handle


def module_files() -> dict[str, Path]:
    """``job.run`` -> its file, for every module of :data:`PACKAGES`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


def imported(module: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """``(module imported, line, inside a function)`` for each project module ``module``
    imports (``from . import x`` counts as ``package.x`` when ``x`` is a module)."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(inner) for inner in ast.walk(node) if inner is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            found.append((name, node.lineno, id(node) in in_function))
    return found


def graph() -> dict[str, set[str]]:
    modules = module_files()
    known = set(modules)
    edges = {}
    for module, path in modules.items():
        edges[module] = {name for name, _, _ in imported(module, path, known) if name in known}
        edges[module].discard(module)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_the_reader_sees_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_project_s_modules():
    edges = graph()
    assert edges["job.cli"] >= {"job.run", "job.config"}, "the reader missed imports"
    assert cycles(edges) == []


def test_job_imports_inside_functions_only_heavy_optional_dependencies():
    modules = module_files()
    deferred = [f"{path.relative_to(ROOT)}:{line}: {name}"
                for module, path in modules.items() if module.split(".")[0] == "job"
                for name, line, inside in imported(module, path, set(modules))
                if inside and name.split(".")[0] not in DEFERRABLE]
    assert deferred == []


def test_job_imports_nothing_of_submit_or_azure():
    modules = module_files()
    reached = [f"{module}: {name}" for module, path in modules.items() if module.startswith("job")
               for name, _, _ in imported(module, path, set(modules))
               if name.split(".")[0] in ("submit", "azure")]
    assert reached == []


def test_importing_submit_loads_only_the_job_modules_it_uses():
    """``job/__init__`` is lazy: the pool, the token splitter and the seed's API load when
    first used. (``job.native`` loads with ``job.sharding``, whose ``size`` strategy it
    balances; it builds nothing until it is used.)"""
    code = "import submit, sys; print(' '.join(sorted(m for m in sys.modules if m.startswith('job'))))"
    result = subprocess.run([sys.executable, "-c", code], env=clean_environ(), cwd=ROOT,
                            capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert not loaded & {"job.api", "job.pool", "job.tokens", "job.processor", "job.run",
                         "job.cli"}, loaded


LEAN_START = """
import runpy, sys
sys.argv = ["job", "--input_dir", sys.argv[1], "--out_dir", sys.argv[2], "--log_level", "WARNING",
            "--resume", "false", "--process_count", "2"]
try:
    runpy.run_module("job", run_name="__main__", alter_sys=True)
except SystemExit as done:
    assert done.code == 0, done.code
print(" ".join(sorted(sys.modules)))
"""


def test_a_run_of_the_job_imports_none_of_what_its_start_up_was_spared(tmp_path):
    """Each of these cost every rank 2-20 ms of start-up and was taken out of its path
    (the pool forks its own workers, the command line is read by hand, YAML is read only
    from a file, the kernel's compiler tools only when it compiles; plain classes and named
    tuples instead of ``dataclasses``, which imports ``inspect``, and of ``typing``)."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_bytes(b"one two\n")
    result = subprocess.run([sys.executable, "-c", LEAN_START, str(source), str(tmp_path / "out")],
                            env=clean_environ(), cwd=ROOT, capture_output=True, text=True,
                            check=True)
    loaded = set(result.stdout.split())
    assert "job.tokens" in loaded and "job.pool" in loaded
    assert not loaded & {"multiprocessing", "argparse", "yaml", "socket", "subprocess",
                         "tempfile", "shutil", "platform", "dataclasses", "typing",
                         "inspect"}, loaded
