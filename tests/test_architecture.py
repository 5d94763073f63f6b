"""Architecture checks: import layers, matplotlib usage, module sizes.

The import contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are
checked with import-linter (a ``test`` extra). ``lint-imports`` run by hand from
the repository root checks the same contracts.

This module also defines :class:`ForbiddenExternalSubmoduleContract`, the custom
contract type that ``pyproject.toml`` registers for "nothing imports
matplotlib.pyplot": import-linter's own ``forbidden`` contract only accepts
top-level external packages, because grimp squashes an external package into
one node (``matplotlib.pyplot`` is recorded as ``matplotlib``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter import Contract, ContractCheck, fields, output

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
PACKAGE_DIR = SRC / "vaekit"
PYPROJECT = REPO_ROOT / "pyproject.toml"

MAX_MODULE_LINES = 500
# Contracts that must stay configured (others added to pyproject.toml are checked too).
REQUIRED_CONTRACTS = {"layers", "no-matplotlib-below-viz", "no-pyplot"}


# --------------------------------------------------------------------------- helpers


def _subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child interpreters: this checkout's src/ first, wide un-wrapped output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "200"  # rich (import-linter's output) would wrap chains at 80 columns
    env.pop("MPLBACKEND", None)
    env.update(extra)
    return env


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _configured_contracts() -> list[dict]:
    with PYPROJECT.open("rb") as f:
        config = tomllib.load(f)
    return config.get("tool", {}).get("importlinter", {}).get("contracts", [])


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


# --------------------------------------------------------------------------- import-linter


def test_required_contracts_are_configured():
    contracts = _configured_contracts()
    ids = [c.get("id") for c in contracts]
    assert all(ids), f"every contract in pyproject.toml needs an id (got {ids})"
    missing = REQUIRED_CONTRACTS - set(ids)
    assert not missing, f"contracts missing from pyproject.toml [tool.importlinter]: {sorted(missing)}"


def run_lint_imports(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run import-linter's command line (``lint-imports``) with this interpreter."""
    command = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
        "--no-cache",  # leave no .import_linter_cache/ behind
        *args,
    ]
    return subprocess.run(command, cwd=cwd, env=_subprocess_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("contract_id", [c.get("id") for c in _configured_contracts()])
def test_import_contract_is_kept(contract_id):
    result = run_lint_imports("--config", str(PYPROJECT), "--contract", contract_id)
    report = result.stdout + result.stderr
    start = report.find("\n---------\nContracts\n")  # skip the ASCII-art logo of recent versions
    report = report[start + 1 :] if start >= 0 else report
    print(report)
    assert result.returncode == 0, f"import-linter contract {contract_id!r} is broken:\n{report}"


# --------------------------------------------------------------------------- source checks


def test_no_module_is_too_long():
    offenders = []
    for path in _source_files():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            offenders.append(f"{_rel(path)}: {lines} lines")
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines (split them):\n" + "\n".join(offenders)


def _matplotlib_use_calls(tree: ast.AST) -> list[int]:
    """Line numbers of ``matplotlib.use(...)`` calls, aliases included (``mpl.use``, ``from matplotlib import use``)."""
    module_names = {"matplotlib"}
    use_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "matplotlib" and alias.asname:
                    module_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "matplotlib":
            for alias in node.names:
                if alias.name == "use":
                    use_names.add(alias.asname or "use")
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "use"
            and isinstance(func.value, ast.Name)
            and func.value.id in module_names
        ) or (isinstance(func, ast.Name) and func.id in use_names):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_source_calls_matplotlib_use():
    offenders = []
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{_rel(path)}:{line}" for line in _matplotlib_use_calls(tree)]
    assert not offenders, (
        "matplotlib.use() picks the user's backend for them; build figures with "
        "matplotlib.figure.Figure instead:\n" + "\n".join(offenders)
    )


# --------------------------------------------------------------------------- import-time behaviour


def _run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=_subprocess_env(**env), capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"python -c {code!r} failed:\n{result.stdout}{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


def test_import_vaekit_does_not_import_pyplot():
    out = _run_python("import vaekit, sys; print('matplotlib.pyplot' in sys.modules)")
    assert out == "False", "importing vaekit imports matplotlib.pyplot (directly or through a dependency)"


def test_import_vaekit_keeps_backend_chosen_with_matplotlib_use():
    code = (
        "import json, matplotlib; matplotlib.use('svg'); import vaekit, sys; "
        "print(json.dumps([matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules]))"
    )
    backend, pyplot_loaded = json.loads(_run_python(code))
    assert backend.lower() == "svg", f"importing vaekit switched the user's backend 'svg' to {backend!r}"
    assert not pyplot_loaded


def test_import_vaekit_keeps_backend_chosen_with_mplbackend():
    code = (
        "import vaekit, json, sys, matplotlib; "
        "print(json.dumps([matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules]))"
    )
    backend, pyplot_loaded = json.loads(_run_python(code, MPLBACKEND="pdf"))
    assert backend.lower() == "pdf", f"importing vaekit overrode MPLBACKEND=pdf with {backend!r}"
    assert not pyplot_loaded


# --------------------------------------------------------------------------- custom contract type


def _forbidden_names(node: ast.AST, forbidden: str) -> list[str]:
    """Modules inside ``forbidden`` that an import statement loads (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if _is_or_inside(alias.name, forbidden)]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if _is_or_inside(node.module, forbidden):
            return [node.module]
        return [f"{node.module}.{a.name}" for a in node.names if _is_or_inside(f"{node.module}.{a.name}", forbidden)]
    return []


def _is_or_inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


class ForbiddenExternalSubmoduleContract(Contract):
    """Source modules must not import the given submodules of external packages.

    Options:
        - ``source_modules``: internal packages/modules (their descendants included).
        - ``forbidden_modules``: dotted names inside external packages, e.g. ``matplotlib.pyplot``.

    Needs ``include_external_packages = true``. The graph tells which internal modules
    import the external package at all; their source is then read to see which
    submodules the import statements name. Direct imports only: the graph does not
    follow imports inside external packages (the import-time test above covers that).
    """

    source_modules = fields.SetField(subfield=fields.ModuleField())
    forbidden_modules = fields.SetField(subfield=fields.StringField())

    def check(self, graph, verbose):
        if str(self.session_options.get("include_external_packages")).lower() != "true":
            raise ValueError(f"{self.name}: needs include_external_packages = true")
        importers: set[str] = set()
        for module in self.source_modules:
            if module.name not in graph.modules:
                raise ValueError(f"Module '{module.name}' does not exist.")
            importers |= {module.name} | graph.find_descendants(module.name)
        violations = []
        for forbidden in sorted(self.forbidden_modules):
            external_root = forbidden.split(".")[0]
            if external_root not in graph.modules:
                continue  # nothing imports that package at all
            for importer in sorted(graph.find_modules_that_directly_import(external_root) & importers):
                output.verbose_print(verbose, f"Reading the imports of {importer} from {external_root}...")
                for line, imported in self._imports_in(importer, forbidden):
                    violations.append({"importer": importer, "imported": imported, "line": line})
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check):
        for v in check.metadata["violations"]:
            output.print_error(f"{v['importer']} -> {v['imported']} (l.{v['line']})", bold=False)
        output.new_line()

    @staticmethod
    def _imports_in(module_name: str, forbidden: str) -> list[tuple[int, str]]:
        path = _module_file(module_name)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = {(node.lineno, name) for node in ast.walk(tree) for name in _forbidden_names(node, forbidden)}
        return sorted(found)


def _module_file(module_name: str) -> Path:
    """Source file of an internal module, found without importing anything."""
    root, *rest = module_name.split(".")
    spec = importlib.util.find_spec(root)  # a top-level name: nothing is executed
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"cannot locate package {root!r}")
    base = Path(list(spec.submodule_search_locations)[0]).joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    raise ValueError(f"cannot find the source of {module_name!r}")
