"""The infrastructure agrees with the app: app settings are the app's settings list
(local.settings.sample.json) in their Azure form; container names, the Event Grid subject
filter and the blob trigger path name the same container; the webhook targets the blob trigger;
an existing archive account is followed by the data containers, roles and Event Grid topic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra_model as m

FUNCTION_APP = "modules/function-app.bicep"

# The app contract (fixed with the Python side).
BLOB_FUNCTION = "reference_from_blob"
DELETED_FUNCTION = "source_deleted"  # the Event Grid trigger of BlobDeleted (functions/blob_deleted.py)
BLOB_TRIGGER_PATH = "%SOURCE_CONTAINER%/{name}"
BLOB_CONNECTION = "DATA_STORAGE"
NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".h5", ".hdf5", ".he5"}
HTTP_ROUTES = {"generate_reference": ("generate-reference", "POST"), "health": ("health", "GET")}

# How a setting of local.settings.sample.json appears in Azure.
CONNECTION_STRING = re.compile(r"UseDevelopmentStorage=true|AccountName=|BlobEndpoint=|DefaultEndpointsProtocol=", re.IGNORECASE)
IDENTITY_FORM = {
    # the host also keeps diagnostic events in tables
    "AzureWebJobsStorage": {"blobServiceUri", "queueServiceUri", "tableServiceUri", "credential", "clientId"},
}
DEFAULT_IDENTITY_FORM = {"blobServiceUri", "queueServiceUri", "credential", "clientId"}
# Host-level settings that are not app settings on Flex Consumption, and why.
NOT_APP_SETTINGS_IN_AZURE = {"FUNCTIONS_WORKER_RUNTIME": "functionAppConfig.runtime"}
# Host-level settings that exist only in Azure (the local host logs to the console).
AZURE_ONLY = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
# Settings whose Azure value differs from the local one on purpose.
AZURE_VALUES = {
    "BLOB_TRIGGER_SOURCE": "EventGrid",  # Flex Consumption supports only the Event Grid source
    # sized for a 2048 MB instance (test_parse_limits_fit_the_instance); the local defaults are a developer machine's
    "PARSE_WORKERS": "2",
    "PARSE_MEMORY_MB": "768",
}


def expected_azure_settings() -> set[str]:
    expected = set(AZURE_ONLY)
    for name, value in m.sample_settings().items():
        if name in NOT_APP_SETTINGS_IN_AZURE:
            continue
        if CONNECTION_STRING.search(value):
            expected |= {f"{name}__{part}" for part in IDENTITY_FORM.get(name, DEFAULT_IDENTITY_FORM)}
        else:
            expected.add(name)
    return expected


def resolved_settings() -> dict[str, object]:
    return {name: m.resolve_in_module(FUNCTION_APP, value) for name, value in m.app_settings().items()}


# --- app settings -------------------------------------------------------------------------


def test_app_settings_are_exactly_the_apps_settings_in_azure_form():
    actual = set(m.app_settings())
    expected = expected_azure_settings()
    assert not expected - actual, f"settings the app reads but Bicep does not set: {sorted(expected - actual)}"
    assert not actual - expected, f"settings Bicep sets that the app does not read: {sorted(actual - expected)}"


def test_sample_connection_settings_are_the_known_connections():
    """A new connection in the sample needs its identity form decided here, deliberately."""
    connections = {n for n, v in m.sample_settings().items() if CONNECTION_STRING.search(v)}
    assert connections == {"AzureWebJobsStorage", "DATA_STORAGE"}


def test_setting_values_match_the_sample_defaults():
    sample, azure = m.sample_settings(), resolved_settings()
    for name, local in sample.items():
        if name in NOT_APP_SETTINGS_IN_AZURE or CONNECTION_STRING.search(local):
            continue
        assert azure[name] == AZURE_VALUES.get(name, local), f"{name}: Bicep {azure[name]!r}, sample {local!r}"


def test_flex_runtime_replaces_functions_worker_runtime():
    assert m.sample_settings()["FUNCTIONS_WORKER_RUNTIME"] == "python"
    (site,) = m.load(m.INFRA / FUNCTION_APP).resources("Microsoft.Web/sites")
    assert site.config["properties"]["functionAppConfig"]["runtime"]["name"] == "python"


def test_connections_point_at_the_right_accounts():
    azure = resolved_settings()
    assert azure["AzureWebJobsStorage__blobServiceUri"] == "hostStorage.outputs.blobEndpoint"
    assert azure["AzureWebJobsStorage__queueServiceUri"] == "hostStorage.outputs.queueEndpoint"
    assert azure["AzureWebJobsStorage__tableServiceUri"] == "hostStorage.outputs.tableEndpoint"
    assert azure["DATA_STORAGE__blobServiceUri"] == "dataContainers.outputs.blobEndpoint"
    assert azure["DATA_STORAGE__queueServiceUri"] == "dataContainers.outputs.queueEndpoint"
    assert azure["AzureWebJobsStorage__clientId"] == azure["DATA_STORAGE__clientId"] == "identity.properties.clientId"


def test_identity_settings_the_app_reads_are_set():
    """Every identity-form name the app's settings model reads (e.g. DATA_STORAGE__clientId) is set."""
    sys.path.insert(0, str(m.ROOT))
    settings = pytest.importorskip("shared.settings")
    aliases = set()
    for field in settings.Settings.model_fields.values():
        alias = field.validation_alias
        aliases |= set(getattr(alias, "choices", [alias]))
    identity = {a for a in aliases if isinstance(a, str) and "__" in a}
    assert identity, "the app reads no identity-based connection setting?"
    assert identity <= set(m.app_settings()), f"not set by Bicep: {identity - set(m.app_settings())}"


# --- containers, subject filter, trigger path ---------------------------------------------


def test_container_names_agree_everywhere():
    main, sub, sample = m.main(), m.subscription(), m.sample_settings()
    assert main.param_default("sourceContainerName") == sample["SOURCE_CONTAINER"] == "raw-netcdf"
    assert main.param_default("refsContainerName") == sample["REFS_CONTAINER"] == "refs"
    assert sub.param_default("sourceContainerName") == main.param_default("sourceContainerName")
    for path in ("modules/data-containers.bicep", "modules/roles-data.bicep", FUNCTION_APP):
        args = m.module_call(main, path).config["params"]
        assert str(args["sourceContainerName"]) == "sourceContainerName", path
        assert str(args["refsContainerName"]) == "refsContainerName", path
    assert str(main.outputs["SOURCE_CONTAINER"]["value"]) == "sourceContainerName"
    assert str(main.outputs["REFS_CONTAINER"]["value"]) == "refsContainerName"


def test_trigger_path_setting_is_the_source_container():
    setting = re.fullmatch(r"%(\w+)%/\{name\}", BLOB_TRIGGER_PATH).group(1)
    assert str(m.app_settings()[setting]) == "sourceContainerName"
    assert resolved_settings()[setting] == m.main().param_default("sourceContainerName")


def test_event_grid_subject_filter_is_the_source_container():
    sub = m.subscription()
    filt = sub.resource("subscription").config["properties"]["filter"]
    assert filt["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert filt["subjectBeginsWith"] == "/blobServices/default/containers/${sourceContainerName}/blobs/"
    source = m.sample_settings()["SOURCE_CONTAINER"]
    assert sub.resolve(filt["subjectBeginsWith"]) == f"/blobServices/default/containers/{source}/blobs/"
    assert filt["isSubjectCaseSensitive"] is False


def test_event_grid_filters_netcdf_suffixes():
    sub = m.subscription()
    filters = sub.resource("subscription").config["properties"]["filter"]["advancedFilters"]
    ends = [f for f in filters if f["operatorType"] == "StringEndsWith"]
    assert len(ends) == 1 and ends[0]["key"] == "subject"
    suffixes = sub.resolve(ends[0]["values"])
    assert set(suffixes) == NETCDF_SUFFIXES and len(suffixes) == len(NETCDF_SUFFIXES)
    assert len(suffixes) <= 25  # Event Grid limit of values per advanced filter
    # Matching is case-insensitive in Event Grid, like the app's own check.
    not_in = [f for f in filters if f["operatorType"] == "StringNotIn"]
    assert [(f["key"], f["values"]) for f in not_in] == [("data.api", ["CreateFile"])]
    assert not [f for f in filters if f["operatorType"] in ("StringIn", "StringBeginsWith", "StringContains")]


def test_event_grid_suffixes_match_the_app():
    sys.path.insert(0, str(m.ROOT))
    paths = pytest.importorskip("shared.paths")
    suffixes = set(m.subscription().resolve(m.subscription().params["netcdfSuffixes"]["default"]))
    assert suffixes == {s.lower() for s in paths.NETCDF_SUFFIXES}


def test_webhook_targets_the_blob_trigger_through_the_blob_extension():
    sub = m.subscription()
    props = sub.resource("subscription").config["properties"]["destination"]["properties"]
    assert props["endpointUrl"] == (
        "https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs"
        "?functionName=Host.Functions.${functionName}&code=${functionHost.listKeys().systemKeys.blobs_extension}"
    )
    assert sub.param_default("functionName") == BLOB_FUNCTION
    host = sub.resource("functionHost")
    assert (host.type, host.existing, str(host.config["parent"]), host.config["name"]) == (
        "Microsoft.Web/sites/host",
        True,
        "functionApp",
        "default",
    )
    app = sub.resource("functionApp")
    assert app.existing and app.type == "Microsoft.Web/sites"
    assert m.render(app.config["scope"]) == "resource_group(functionAppResourceGroup)"
    assert props["maxEventsPerBatch"] == 1


def test_deletions_reach_the_event_grid_trigger_for_the_source_container():
    sub = m.subscription()
    props = sub.resource("deletedSubscription").config["properties"]
    filt = props["filter"]
    assert filt["includedEventTypes"] == ["Microsoft.Storage.BlobDeleted"]
    assert filt["subjectBeginsWith"] == sub.resource("subscription").config["properties"]["filter"]["subjectBeginsWith"]
    assert filt["isSubjectCaseSensitive"] is False
    (ends,) = filt["advancedFilters"]
    assert (ends["operatorType"], ends["key"], str(ends["values"])) == ("StringEndsWith", "subject", "netcdfSuffixes")
    # The Event Grid extension's webhook (not the blob extension's): functionName is the Python function's name.
    assert props["destination"]["properties"]["endpointUrl"] == (
        "https://${functionApp.properties.defaultHostName}/runtime/webhooks/eventgrid"
        "?functionName=${deletedFunctionName}&code=${functionHost.listKeys().systemKeys.eventgrid_extension}"
    )
    assert sub.param_default("deletedFunctionName") == DELETED_FUNCTION
    assert props["destination"]["properties"]["maxEventsPerBatch"] == 1
    assert str(props["deadLetterWithResourceIdentity"]["deadLetterDestination"]["properties"]["blobContainerName"]) == (
        "deadLetterContainerName")
    assert sub.param_default("deletedSubscriptionName") != sub.param_default("subscriptionName")


def test_dead_letters_go_to_the_host_storage_container_event_grid_may_write():
    main, sub = m.main(), m.subscription()
    dest = sub.resource("subscription").config["properties"]["deadLetterWithResourceIdentity"]["deadLetterDestination"]
    assert str(dest["properties"]["blobContainerName"]) == "deadLetterContainerName"
    assert sub.param_default("deadLetterContainerName") == main.resolve(main.outputs["EVENTGRID_DEADLETTER_CONTAINER"]["value"])
    assert m.render(main.outputs["EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID"]["value"]) == "hostStorage.outputs.id"
    host_containers = main.resolve(main.module("hostStorage").config["params"]["containerNames"])
    assert main.resolve(main.outputs["EVENTGRID_DEADLETTER_CONTAINER"]["value"]) in host_containers
    roles_host = m.module_call(main, "modules/roles-host.bicep").config["params"]
    assert str(roles_host["deadLetterContainerName"]) == "deadLetterContainerName"


def test_outputs_give_users_what_they_need():
    main = m.main()
    outputs = {name: m.render(o["value"]) for name, o in main.outputs.items()}
    assert outputs["FUNCTION_APP_URL"] == "'https://${functionApp.outputs.defaultHostName}'"
    assert outputs["GENERATE_REFERENCE_URL"] == "'https://${functionApp.outputs.defaultHostName}/api/generate-reference'"
    assert outputs["HEALTH_URL"] == "'https://${functionApp.outputs.defaultHostName}/api/health'"
    for name in (
        "FUNCTION_APP_NAME",
        "DATA_STORAGE_ACCOUNT_NAME",
        "SOURCE_CONTAINER",
        "REFS_CONTAINER",
        "EVENTGRID_SYSTEM_TOPIC_NAME",
        "HOST_STORAGE_ACCOUNT_NAME",
    ):
        assert name in outputs


# --- existing archive account -------------------------------------------------------------

NEW = {"environmentName": "dev"}
EXISTING = {
    "environmentName": "dev",
    "existingSourceStorageAccountName": "archive",
    "existingSourceStorageResourceGroup": "rg-archive",
}
EXISTING_HERE = {"environmentName": "dev", "existingSourceStorageAccountName": "archive"}


@pytest.mark.parametrize(
    "params, creates, account, group",
    [
        (NEW, True, None, m.RESOURCE_GROUP),
        (EXISTING, False, "archive", "rg-archive"),
        (EXISTING_HERE, False, "archive", m.RESOURCE_GROUP),
    ],
    ids=["new-account", "existing-account-elsewhere", "existing-account-here"],
)
def test_data_resources_follow_the_source_account(params, creates, account, group):
    main = m.main()
    ev = lambda expr: m.evaluate(main, expr, params)
    assert ev(main.module("newDataStorage").condition) is creates
    data_account = ev(m.BicepElement("dataAccountName"))
    if account is None:
        assert data_account.startswith("stdata") and len(data_account) <= 24
        assert ev(main.module("newDataStorage").config["params"]["name"]) == data_account
    else:
        assert data_account == account
    assert ev(m.BicepElement("dataResourceGroupName")) == group
    for symbol in ("dataContainers", "rolesData", "eventGridTopic"):
        module = main.module(symbol)
        assert m.render(module.config["scope"]) == "resource_group(dataResourceGroupName)", symbol
        if "accountName" in module.config["params"]:
            assert ev(module.config["params"]["accountName"]) == data_account, symbol
    assert ev(main.module("dataContainers").config["params"]["createSourceContainer"]) is creates


def test_existing_account_is_only_referenced_never_redeployed():
    for path in ("modules/data-containers.bicep", "modules/roles-data.bicep"):
        template = m.load(m.INFRA / path)
        accounts = template.resources("Microsoft.Storage/storageAccounts")
        assert accounts and all(a.existing for a in accounts), path
    containers = m.load(m.INFRA / "modules/data-containers.bicep")
    assert m.render(containers.resource("sourceContainer").condition) == "createSourceContainer"


def test_event_grid_topic_sits_on_the_data_account():
    main = m.main()
    args = main.module("eventGridTopic").config["params"]
    assert m.render(args["storageAccountId"]) == "dataContainers.outputs.id"
    assert m.render(args["location"]) == "dataContainers.outputs.location"
    (topic,) = m.load(m.INFRA / "modules" / "eventgrid-topic.bicep").resources("Microsoft.EventGrid/systemTopics")
    assert topic.config["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    assert m.render(main.outputs["EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP"]["value"]) == "eventGridTopic.outputs.resourceGroupName"


# --- phase 2 scripts agree with the templates --------------------------------------------


def script_parameters(text: str, pattern: str) -> dict[str, str]:
    block = text[text.index("--template-file") :]
    return dict(re.findall(pattern, block))


@pytest.mark.parametrize(
    "script, param_pattern, outputs_pattern",
    [
        (m.POSIX_HOOK, r'(\w+)="\$(\w+)"', r'^outputs="([^"]+)"'),
        (m.WINDOWS_HOOK, r"(\w+)=\$env:(\w+)", r"^\$outputs = @\(([^)]+)\)"),
    ],
    ids=["sh", "pwsh"],
)
def test_phase_two_scripts_pass_main_outputs_to_the_subscription_template(script, param_pattern, outputs_pattern):
    text = script.read_text()
    main, sub = m.main(), m.subscription()
    passed = script_parameters(text, param_pattern)
    assert set(passed) <= set(sub.params), f"unknown parameters {set(passed) - set(sub.params)}"
    required = {n for n, p in sub.params.items() if p.get("default") is None}
    assert required <= set(passed), f"missing {required - set(passed)}"
    assert {"sourceContainerName", "functionAppResourceGroup"} <= set(passed)
    known = set(main.outputs) | {"AZURE_RESOURCE_GROUP"}
    assert set(passed.values()) <= known, f"not outputs of main.bicep: {set(passed.values()) - known}"
    listed = set(re.findall(r"\w+", re.search(outputs_pattern, text, re.MULTILINE).group(1)))
    assert listed <= set(main.outputs), listed - set(main.outputs)
    assert set(passed.values()) - {"AZURE_RESOURCE_GROUP"} <= listed
    assert "eventgrid-subscription.bicep" in text
    assert re.search(r"--resource-group\s+\"?\$(env:)?EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP", text)


# --- the app itself (once function_app.py exists) -----------------------------------------

PROBE = """
import json, function_app
out = {}
for fn in function_app.app.get_functions():
    out[fn.get_function_name()] = json.loads(fn.get_function_json())
print(json.dumps(out))
"""


def app_function_json(root: Path, settings: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_STORAGE", "AzureWebJobs"))}
    env.update(settings)
    env["PYTHONPATH"] = str(root)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], check=False, cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def azure_like_settings() -> dict[str, str]:
    """The Bicep app settings, with runtime values replaced by plausible ones."""
    fake = {
        "hostStorage.outputs.blobEndpoint": "https://sthost.blob.core.windows.net/",
        "hostStorage.outputs.queueEndpoint": "https://sthost.queue.core.windows.net/",
        "hostStorage.outputs.tableEndpoint": "https://sthost.table.core.windows.net/",
        "dataContainers.outputs.blobEndpoint": "https://stdata.blob.core.windows.net/",
        "dataContainers.outputs.queueEndpoint": "https://stdata.queue.core.windows.net/",
        "identity.properties.clientId": "00000000-0000-0000-0000-000000000001",
        "applicationInsights.properties.ConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000002",
    }
    out = {}
    for name, value in resolved_settings().items():
        out[name] = fake.get(str(value), str(value)).replace("${identityClientId}", fake["identity.properties.clientId"])
    return out


def test_app_functions_match_the_infrastructure():
    """Import the app with the Azure app settings: the blob trigger and routes are what Event Grid and the outputs expect."""
    if not (m.ROOT / "function_app.py").is_file():
        pytest.skip("function_app.py is not written yet")
    functions = app_function_json(m.ROOT, azure_like_settings())
    assert BLOB_FUNCTION in functions, f"no function {BLOB_FUNCTION}: {sorted(functions)}"
    (trigger,) = [b for b in functions[BLOB_FUNCTION]["bindings"] if b["type"] == "blobTrigger"]
    assert trigger["path"] == BLOB_TRIGGER_PATH
    assert trigger["connection"] == BLOB_CONNECTION
    assert str(trigger.get("source")).lower() == "eventgrid", "on Flex Consumption the blob trigger must use Event Grid"
    assert DELETED_FUNCTION in functions, f"no function {DELETED_FUNCTION}: {sorted(functions)}"
    assert [b["type"] for b in functions[DELETED_FUNCTION]["bindings"]] == ["eventGridTrigger"]
    for name, (route, method) in HTTP_ROUTES.items():
        (http,) = [b for b in functions[name]["bindings"] if b["type"] == "httpTrigger"]
        assert http["route"] == route, name
        assert method.lower() in [x.lower() for x in http.get("methods", [method])], name
    (gen,) = [b for b in functions["generate_reference"]["bindings"] if b["type"] == "httpTrigger"]
    assert str(gen["authLevel"]).upper() == "FUNCTION"
    host = m.ROOT / "host.json"
    if host.is_file():
        prefix = json.loads(host.read_text()).get("extensions", {}).get("http", {}).get("routePrefix", "api")
        assert prefix == "api", "main.bicep outputs /api/... URLs"


# --- documentation ------------------------------------------------------------------------


def test_readme_documents_every_azd_setting():
    readme = (m.INFRA / "README.md").read_text()
    in_params = set(re.findall(r"\$\{(NCREFS_\w+)", (m.INFRA / "main.parameters.json").read_text()))
    in_readme = set(re.findall(r"\b(NCREFS_[A-Z_]+)\b", readme)) - {"NCREFS_KEY_WAIT_ATTEMPTS", "NCREFS_KEY_WAIT_SECONDS"}
    assert in_params == in_readme, f"undocumented {in_params - in_readme}, stale {in_readme - in_params}"
    for must in (
        "azd up",
        "az deployment group create",
        "existingSourceStorageAccountName",
        "HEALTH_URL",
        "GENERATE_REFERENCE_URL",
        "azd hooks run postdeploy",
        "eventgrid-subscription.bicep",
    ):
        assert must in readme, must
