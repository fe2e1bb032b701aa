"""What a deployment ships, and what the remote build installs.

The package: the files of a checkout (plus the junk a working copy collects) that `.funcignore`
lets through, computed the two ways the deployment tools read that file. Core Tools
(`func azure functionapp publish`, Azure/azure-functions-core-tools, FileSystemHelpers.GetLocalFiles
and Common/GitIgnoreParser.cs) skips `.git`/`.vscode` folders and a few file names, then drops a
file when a pattern, turned into a regular expression, matches the *start* of its path; `azd deploy`
reads the file as a .gitignore. Both must give the same package: the app and nothing else, and
everything the app imports is in it or is a runtime dependency of the lock.

The locks: requirements.txt pins the runtime set (what the Azure remote build installs),
requirements-dev.txt the same pins plus the test tools; scripts/lock writes both from the .in files.
No Azurite, no network.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# The Functions app: its entry point, its code, the host's configuration, and the lock the remote
# build installs. ncrefs/ (the public package of the CLI and Python API) is not imported by it.
PACKAGE_TOP_LEVEL = {"function_app.py", "functions", "host.json", "requirements.txt", "shared"}

# What a working copy collects besides the checkout: none of it may ship.
JUNK = [
    ".azure/ncrefs-dev/.env", ".azure/config.json", ".azurite/__blobstorage__/x", ".azurite/__azurite_db_blob__.json",
    "__azurite_db_blob__.json", "__blobstorage__/x", ".venv/bin/python", ".venv/lib/python3.12/site-packages/x.py",
    "ncrefs.egg-info/PKG-INFO", "x.egg-info/SOURCES.txt", ".vscode/settings.json", "shared/.vscode/settings.json",
    ".idea/workspace.xml", "__pycache__/function_app.cpython-312.pyc", "shared/__pycache__/api.cpython-312.pyc",
    "shared/sandbox/__pycache__/pool.cpython-312.pyc", "functions/__pycache__/http_api.cpython-312.pyc", "stray.pyc",
    ".pytest_cache/v/cache/nodeids", ".hypothesis/examples/x", ".mypy_cache/3.12/x.json", ".ruff_cache/x",
    ".coverage", "htmlcov/index.html", "build/lib/shared/api.py", "dist/ncrefs-0.1.0.tar.gz", "node_modules/.bin/azurite",
    "node_modules/azurite/package.json", "benchmarks/data/big.nc", "local.settings.json", ".env", ".env.local",
    ".DS_Store", "shared/.DS_Store", ".github/workflows/ci.yml", ".gitattributes",
]

# Test and tooling distributions: in the dev lock only.
DEV_ONLY = {"pytest", "pytest-timeout", "hypothesis", "netcdf4", "pycep-parser", "pathspec", "uv"}


# --- the package -----------------------------------------------------------------------------


def checkout_files() -> list[str]:
    """Tracked files, plus new ones not yet committed that git does not ignore."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [p for p in out.split("\0") if p and (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def working_copy(tmp_path_factory) -> Path:
    """The checkout's file tree (empty files will do: only names matter) plus the junk."""
    root = tmp_path_factory.mktemp("app")
    for rel in [*checkout_files(), *JUNK]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    shutil.copyfile(ROOT / ".funcignore", root / ".funcignore")
    return root


def walk(root: Path, skip_dirs=(), skip_files=()) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d.lower() not in skip_dirs)
        found += [(Path(folder) / f).relative_to(root).as_posix() for f in files if f.lower() not in skip_files]
    return sorted(found)


def core_tools_pattern(pattern: str) -> str:
    """One .funcignore line as Core Tools' GitIgnoreParser turns it into a regular expression:
    regex metacharacters escaped, `**` -> `(.+)`, `*` -> `([^/]+)`; used anchored at the start only."""
    escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", "([^/]+)")


def core_tools_package(root: Path) -> list[str]:
    lines = [line.strip() for line in (root / ".funcignore").read_text().split("\n")]
    lines = [line for line in lines if line and not line.startswith("#")]
    positive = [line.removeprefix("/") for line in lines if not line.startswith("!")]
    negative = [line[1:].removeprefix("/") for line in lines if line.startswith("!")]

    def regex(patterns):
        return re.compile("^((" + ")|(".join(core_tools_pattern(p) for p in sorted(patterns)) + "))") if patterns else None

    deny, allow = regex(positive), regex(negative)
    files = walk(root, skip_dirs={".git", ".vscode"},
                 skip_files={".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})
    return [f for f in files if (allow is not None and allow.match(f)) or deny is None or not deny.match(f)]


def azd_package(root: Path) -> list[str]:
    spec = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    return [f for f in walk(root) if not spec.match_file(f)]


@pytest.fixture(scope="module")
def package(working_copy) -> list[str]:
    files = core_tools_package(working_copy)
    print("\nThe Functions package (.funcignore applied as Core Tools does):", *files, sep="\n  ")
    return files


def test_package_is_the_app_and_nothing_else(package):
    top = {path.split("/")[0] for path in package}
    assert top == PACKAGE_TOP_LEVEL, f"ships {sorted(top - PACKAGE_TOP_LEVEL)}, misses {sorted(PACKAGE_TOP_LEVEL - top)}"
    assert not [p for p in package if "__pycache__" in p or p.endswith(".pyc") or "/." in p or p.startswith(".")]


def test_azd_and_core_tools_ship_the_same_files(package, working_copy):
    assert azd_package(working_copy) == package


def test_every_tracked_app_file_ships(package):
    """Nothing of the app is lost to a pattern that matches more than it says (Core Tools'
    patterns have no end anchor: `tests` would also drop `tests_helpers.py`)."""
    app = [p for p in checkout_files() if p.split("/")[0] in PACKAGE_TOP_LEVEL and "__pycache__" not in p]
    assert app, "the checkout has no app files?"
    assert sorted(set(app) - set(package)) == []


def python_files(package) -> list[str]:
    return [p for p in package if p.endswith(".py")]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (anywhere in it: lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def module_origin(name: str) -> str | None:
    """The file that defines the deepest importable part of `name`, found without importing it."""
    path, origin = None, None
    for part in name.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, path)
        if spec is None:  # an attribute (from a.b import c), or not installed
            break
        origin = spec.origin if spec.has_location else origin
        path = spec.submodule_search_locations
        if path is None:
            break
    return origin


def runtime_pins() -> dict[str, str]:
    return pins(ROOT / "requirements.txt")


def test_the_app_imports_only_the_package_the_standard_library_and_the_runtime_lock(package):
    local = {Path(p).parts[0].removesuffix(".py") for p in package if p.endswith(".py")}
    owners: dict[str, str] = {}  # file -> the distribution that installed it
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.suffix in (".py", ".so", ".pyd"):
                owners[os.path.normpath(dist.locate_file(file))] = canonicalize_name(dist.metadata["Name"])
    runtime, problems = runtime_pins(), []
    for rel in python_files(package):
        for name in sorted(imported_modules(ROOT / rel)):
            top = name.split(".")[0]
            if top in local or top in sys.stdlib_module_names or top == "__future__":
                continue
            origin = module_origin(name)
            owner = owners.get(os.path.normpath(origin)) if origin else None
            if owner is None:
                problems.append(f"{rel}: {name} is neither in the package nor installed from a distribution")
            elif owner not in runtime:
                problems.append(f"{rel}: {name} comes from {owner}, which requirements.txt does not pin")
    assert not problems, "\n".join(problems)


def test_function_app_imports_from_the_package_alone(package, tmp_path):
    """Copy the package (real contents) and import function_app there: nothing from the repo."""
    for rel in package:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    probe = ("import sys, function_app, shared, functions\n"
             "assert 'ncrefs' not in sys.modules, 'the app imported the public package ncrefs'\n"
             "for m in (function_app, shared, functions):\n"
             "    assert m.__file__.startswith(sys.argv[1]), m.__file__\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]


# --- the locks -------------------------------------------------------------------------------


def pins(path: Path) -> dict[str, str]:
    """name -> version of a lock's `name==version` lines (markers allowed, nothing else)."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.url, f"{path.name}: {line!r} is not an exact pin"
        found[canonicalize_name(req.name)] = spec.version
    return found


def direct(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            reqs.append(Requirement(line))
    return reqs


def test_runtime_lock_is_plain_pip_exact_pins():
    """The remote build runs `pip install -r requirements.txt`: pins only, no options, no paths."""
    text = (ROOT / "requirements.txt").read_text()
    assert not re.search(r"^\s*-", text, re.MULTILINE), "options or includes in requirements.txt"
    assert len(runtime_pins()) > 20


@pytest.mark.parametrize("source, lock", [("requirements.in", "requirements.txt"), ("requirements-tiles.in", "requirements-tiles.txt"),
                                          ("requirements-dev.in", "requirements-dev.txt")])
def test_locks_satisfy_their_direct_dependencies(source, lock):
    """A .in edited without `scripts/lock` shows here."""
    locked = pins(ROOT / lock)
    for req in direct(ROOT / source):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} ({source}) is not in {lock}: run scripts/lock"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"{lock} pins {name}=={locked[name]}, outside {req} ({source}): run scripts/lock"


def test_dev_lock_holds_the_runtime_pins_exactly():
    runtime, dev = runtime_pins(), pins(ROOT / "requirements-dev.txt")
    assert {n: v for n, v in runtime.items() if dev.get(n) != v} == {}
    tiles = pins(ROOT / "requirements-tiles.txt")  # the tile server's extra: the same runtime, the same tile pins
    assert {n: v for n, v in runtime.items() if tiles.get(n) != v} == {}
    assert {n: v for n, v in tiles.items() if dev.get(n) != v} == {}
    assert "titiler-xarray" in tiles and "titiler-xarray" not in runtime
    assert "-r requirements.in" in (ROOT / "requirements-dev.in").read_text()
    assert "-c requirements.txt" in (ROOT / "requirements-dev.in").read_text()


def test_test_tools_stay_out_of_the_runtime_lock():
    runtime, dev = runtime_pins(), pins(ROOT / "requirements-dev.txt")
    assert DEV_ONLY <= set(dev)
    assert DEV_ONLY & set(runtime) == set()


def test_the_project_metadata_reads_the_direct_dependencies_not_the_lock():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dependencies = \{ file = \["requirements.in"\] \}', text, re.MULTILINE)
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert "-r requirements-dev.txt" in bootstrap and "--no-deps -e ." in bootstrap
    for name in ("requirements.in", "requirements.txt", "requirements-tiles.in", "requirements-tiles.txt",
                 "requirements-dev.in", "requirements-dev.txt"):
        assert name in bootstrap.split("wanted=")[1].split("\n")[0], f"bootstrap does not reinstall when {name} changes"
