"""Structure of infra/: every template parses, modules resolve and are called with the
parameters they declare, and azd's files (azure.yaml, main.parameters.json) match the templates.

There is no Bicep CLI here: these checks stand in for the part of `bicep build` that catches
broken wiring between files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra_model as m

BICEP_FILES = m.bicep_files()
ENTRY_POINTS = {m.MAIN, m.SUBSCRIPTION}


def test_infra_has_the_expected_templates():
    names = {m.rel(p) for p in BICEP_FILES}
    assert {"infra/main.bicep", "infra/eventgrid-subscription.bicep"} <= names
    assert len([n for n in names if n.startswith("infra/modules/")]) >= 5


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_every_bicep_file_parses(path: Path):
    template = m.load(path)
    assert template.data.get("resources") or template.data.get("modules"), f"{m.rel(path)} declares nothing"
    assert template.scope == "resourceGroup"


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_module_references_resolve_to_files(path: Path):
    template = m.load(path)
    for module in template.modules():
        target = (path.parent / module.type).resolve()
        assert not module.type.startswith(("br:", "br/", "ts:")), f"{module.symbol}: use local modules"
        assert target.is_file(), f"{m.rel(path)}: module {module.symbol} -> {module.type} does not exist"
        assert m.INFRA in target.parents, f"{module.symbol} points outside infra/"
        m.load(target)  # and it parses


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_modules_are_called_with_the_parameters_they_declare(path: Path):
    template = m.load(path)
    for module in template.modules():
        target = template.module_template(module.symbol)
        passed = set(module.config.get("params", {}))
        declared = set(target.params)
        required = {name for name, p in target.params.items() if p.get("default") is None}
        assert passed <= declared, f"{module.symbol}: unknown parameters {passed - declared}"
        assert required <= passed, f"{module.symbol}: missing required parameters {required - passed}"
        assert module.config.get("name"), f"{module.symbol}: a module deployment needs a name"


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_module_outputs_that_are_used_exist(path: Path):
    template = m.load(path)
    modules = {mod.symbol: mod for mod in template.modules()}
    used = re.findall(r"\b(\w+)\.outputs\.(\w+)", m.strip_comments(template.text))
    for symbol, output in used:
        assert symbol in modules, f"{m.rel(path)}: {symbol}.outputs.{output}: {symbol} is not a module"
        assert output in template.module_template(symbol).outputs, f"{symbol} has no output {output}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_references_between_symbols_exist(path: Path):
    """parent:, scope: and dependsOn name declared resources or modules."""
    template = m.load(path)
    symbols = template.symbols()
    bodies = template.resources() + template.modules()
    for body in bodies:
        refs = []
        for key in ("parent", "dependsOn"):
            if key in body.config:
                refs += sorted(m.identifiers(body.config[key]))
        scope = body.config.get("scope")
        if m.is_identifier(scope):
            refs.append(str(scope))
        for ref in refs:
            assert ref in symbols, f"{m.rel(path)}: {body.symbol} refers to unknown symbol {ref}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_parameters_used_in_the_template_are_declared(path: Path):
    template = m.load(path)
    declared = set(template.params) | set(template.variables) | template.symbols()
    text = m.strip_comments(template.text)
    for name in re.findall(r"\$\{(\w+)[.}]", text):
        assert name in declared, f"{m.rel(path)}: ${{{name}}} is not declared"


def test_every_module_file_is_used():
    called = set()
    for path in BICEP_FILES:
        template = m.load(path)
        called |= {(path.parent / mod.type).resolve() for mod in template.modules()}
    for path in BICEP_FILES:
        if path.resolve() not in ENTRY_POINTS:
            assert path.resolve() in called, f"{m.rel(path)} is never used"


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_api_versions_are_stable_and_explicit(path: Path):
    for res in m.load(path).resources():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", res.api_version), f"{res.symbol}: {res.api_version!r}"


def test_main_parameters_file_matches_main_bicep():
    params = m.main_parameters()
    main = m.main()
    assert set(params) <= set(main.params), f"unknown parameters: {set(params) - set(main.params)}"
    required = {name for name, p in main.params.items() if p.get("default") is None}
    assert required <= set(params), f"azd would prompt for {required - set(params)}"
    for name, entry in params.items():
        value = entry["value"]
        assert re.fullmatch(r"\$\{[A-Z0-9_]+(=[^}]*)?\}", value), f"{name}: use an azd ${{VAR}} placeholder, not {value!r}"
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["deployerPrincipalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_main_parameters_file_defaults_agree_with_main_bicep():
    """A `${VAR=default}` in main.parameters.json must not silently change a Bicep default."""
    main = m.main()
    for name, entry in m.main_parameters().items():
        match = re.fullmatch(r"\$\{[A-Z0-9_]+=([^}]*)\}", entry["value"])
        if match and match.group(1):
            assert str(main.param_default(name)).lower() == match.group(1).lower(), name


def test_azure_yaml_deploys_the_function_app_with_azd():
    config = yaml.safe_load((m.ROOT / "azure.yaml").read_text())
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", config["name"])
    assert config["services"] == {"api": {"project": ".", "language": "python", "host": "function"}}
    infra = config.get("infra", {})
    assert (m.ROOT / infra.get("path", "infra") / f"{infra.get('module', 'main')}.bicep").resolve() == m.MAIN
    assert (m.INFRA / "main.parameters.json").is_file()
    # azd finds the app by this tag.
    site = m.load(m.INFRA / "modules" / "function-app.bicep").resources("Microsoft.Web/sites")[0]
    tags = m.render(site.config["tags"])
    assert "azd-service-name" in tags
    assert m.module_call(m.main(), "modules/function-app.bicep").config["params"]["serviceName"] == "api"


def test_azure_yaml_runs_phase_two_after_deploy():
    hooks = yaml.safe_load((m.ROOT / "azure.yaml").read_text())["hooks"]
    assert set(hooks) == {"postdeploy"}, "the subscription needs the deployed code: postdeploy, not postprovision"
    posix, windows = hooks["postdeploy"]["posix"], hooks["postdeploy"]["windows"]
    assert posix["shell"] == "sh" and windows["shell"] == "pwsh"
    assert (m.ROOT / posix["run"]).resolve() == m.POSIX_HOOK.resolve()
    assert (m.ROOT / windows["run"]).resolve() == m.WINDOWS_HOOK.resolve()
    assert posix.get("continueOnError", False) is False and windows.get("continueOnError", False) is False


def test_flex_consumption_limits():
    main = m.main()
    app = m.load(m.INFRA / "modules" / "function-app.bicep")
    for template in (main, app):
        # Flex Consumption offers 512 too, but the host, the worker and one parser need more (see below)
        assert template.decorator("instanceMemoryMB", "allowed") == [2048, 4096]
        assert template.decorator("maximumInstanceCount", "min_value") == 40
        assert template.decorator("maximumInstanceCount", "max_value") == 1000
    (site,) = app.resources("Microsoft.Web/sites")
    scale = site.config["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert m.render(scale) == "{instanceMemoryMB: instanceMemoryMB, maximumInstanceCount: maximumInstanceCount}"
    args = m.module_call(main, "modules/function-app.bicep").config["params"]
    assert str(args["instanceMemoryMB"]) == "instanceMemoryMB"
    assert str(args["maximumInstanceCount"]) == "maximumInstanceCount"


# What the Functions host and the Python worker (with numpy, h5py, xarray imported) use beside the parsers.
HOST_HEADROOM_MB = 400
# Azure's front end ends an HTTP request that has not answered in 230 s.
HTTP_LIMIT_S = 230


def sizing_rows() -> list[tuple[int, int, int]]:
    """(instance MB, parse workers, parse memory MB) of the sizing table in infra/README.md."""
    readme = (m.INFRA / "README.md").read_text()
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", readme, re.MULTILINE)
    return [tuple(int(v) for v in row) for row in rows]


def seconds(timespan: str) -> int:
    h, mi, s = (int(part) for part in timespan.split(":"))
    return h * 3600 + mi * 60 + s


def test_parse_limits_fit_the_instance():
    """Each parser process may reach its RLIMIT_AS; all of them at once, plus the host and the
    worker, must still fit the instance, or the instance is killed with every invocation on it."""
    main = m.main()
    workers, memory, instance = (main.param_default(n) for n in ("parseWorkers", "parseMemoryMB", "instanceMemoryMB"))
    assert workers * memory + HOST_HEADROOM_MB <= instance, (workers, memory, instance)
    # the app refuses PARSE_MEMORY_MB below 512 (shared/settings.py): so must the template
    assert main.decorator("parseMemoryMB", "min_value") == 512 <= memory
    rows = sizing_rows()
    assert {r[0] for r in rows} == set(main.decorator("instanceMemoryMB", "allowed")), "README sizes every instance size"
    assert (instance, workers, memory) in rows, "the README's sizing table shows the defaults"
    for size, w, mb in rows:
        assert w * mb + HOST_HEADROOM_MB <= size and mb >= 512, f"README: {w} x {mb} MB does not fit {size} MB"


def test_parse_timeout_leaves_room_in_the_function_timeout():
    """A blob invocation may wait for the parses queued ahead of it (the host runs
    maxDegreeOfParallelism of them, parseWorkers at a time), then parse: all within functionTimeout.
    One parse also fits an HTTP request."""
    main = m.main()
    host = json.loads((m.ROOT / "host.json").read_text())
    function_timeout = seconds(host["functionTimeout"])
    concurrency = host["extensions"]["blobs"]["maxDegreeOfParallelism"]
    workers, timeout = main.param_default("parseWorkers"), main.param_default("parseTimeoutSeconds")
    rounds = -(-concurrency // workers)
    assert rounds * timeout + 60 <= function_timeout, (rounds, timeout, function_timeout)
    assert timeout + 30 <= HTTP_LIMIT_S
