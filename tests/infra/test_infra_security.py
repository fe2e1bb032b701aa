"""Security properties read from the parsed templates: locked-down storage, managed identity
everywhere, no secrets in app settings or outputs, least-privilege role assignments."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra_model as m

BICEP_FILES = m.bicep_files()
FUNCTION_APP = "modules/function-app.bicep"
ROLES_DATA = "modules/roles-data.bicep"
ROLES_HOST = "modules/roles-host.bicep"

CONTAINERS = "Microsoft.Storage/storageAccounts/blobServices/containers"
QUEUES = "Microsoft.Storage/storageAccounts/queueServices/queues"
ACCOUNTS = "Microsoft.Storage/storageAccounts"
COMPONENTS = "Microsoft.Insights/components"


def all_resources(type_: str, *, existing: bool | None = False):
    for path in BICEP_FILES:
        for res in m.load(path).resources(type_):
            if existing is None or res.existing == existing:
                yield path, res


def the_site():
    (site,) = m.load(m.INFRA / FUNCTION_APP).resources("Microsoft.Web/sites")
    return site


# --- storage ------------------------------------------------------------------------------


def test_storage_accounts_are_created_somewhere():
    assert list(all_resources(ACCOUNTS)), "no storage account is created"


@pytest.mark.parametrize(
    "prop, expected",
    [
        ("supportsHttpsTrafficOnly", True),
        ("minimumTlsVersion", "TLS1_2"),
        ("allowBlobPublicAccess", False),
        ("allowSharedKeyAccess", False),
        ("defaultToOAuthAuthentication", True),
        ("allowCrossTenantReplication", False),
    ],
)
def test_every_storage_account_is_locked_down(prop, expected):
    for path, account in all_resources(ACCOUNTS):
        assert account.config["properties"].get(prop) is expected or account.config["properties"].get(prop) == expected, (
            f"{m.rel(path)}:{account.symbol}.properties.{prop} must be {expected!r}"
        )


def test_every_storage_account_is_storage_v2():
    for path, account in all_resources(ACCOUNTS):
        assert account.config["kind"] == "StorageV2", m.rel(path)


def test_every_container_is_private():
    found = list(all_resources(CONTAINERS))
    assert len(found) >= 3  # host containers (a loop), source, refs
    for path, container in found:
        assert container.config.get("properties", {}).get("publicAccess") == "None", f"{m.rel(path)}:{container.symbol}"


# --- function app -------------------------------------------------------------------------


def test_function_app_runs_on_flex_consumption_linux_python_312():
    app = m.load(m.INFRA / FUNCTION_APP)
    (plan,) = app.resources("Microsoft.Web/serverfarms")
    assert plan.config["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan.config["properties"]["reserved"] is True
    site = the_site()
    assert site.config["kind"] == "functionapp,linux"
    assert m.render(site.config["properties"]["serverFarmId"]) == "plan.id"
    assert site.config["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.12"}


def test_function_app_is_https_only_with_tls_12():
    props = the_site().config["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"


def test_function_app_uses_only_the_user_assigned_identity():
    identity = the_site().config["identity"]
    assert identity["type"] == "UserAssigned"
    assert [m.unquote(k) for k in identity["userAssignedIdentities"]] == ["${identityId}"]
    args = m.module_call(m.main(), FUNCTION_APP).config["params"]
    assert m.render(args["identityId"]) == "identity.id"
    assert m.render(args["identityClientId"]) == "identity.properties.clientId"
    (uami,) = [u for u in m.main().resources("Microsoft.ManagedIdentity/userAssignedIdentities") if u.condition is None]
    assert uami.symbol == "identity"  # the other one, tilesIdentity, exists only with deployTiles


def test_deployment_package_is_read_with_the_managed_identity():
    storage = the_site().config["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"] == "${hostBlobEndpoint}${deploymentContainerName}"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert str(storage["authentication"]["userAssignedIdentityResourceId"]) == "identityId"
    assert "storageAccountConnectionStringName" not in storage["authentication"]
    # ... in a container of the host storage account, which this deployment creates.
    main = m.main()
    args = m.module_call(main, FUNCTION_APP).config["params"]
    assert m.render(args["hostBlobEndpoint"]) == "hostStorage.outputs.blobEndpoint"
    package = main.resolve(args["deploymentContainerName"])
    assert package in main.resolve(main.module("hostStorage").config["params"]["containerNames"])


def test_app_settings_have_no_secrets():
    settings = m.app_settings()
    for name, value in settings.items():
        text = m.render(value)
        assert not re.search(r"list\w*\(|AccountKey|SharedAccessSignature|sig=|Password", text, re.IGNORECASE), name
        if name.endswith(("ConnectionString", "CONNECTION_STRING")) or name in ("AzureWebJobsStorage", "DATA_STORAGE"):
            # The Application Insights connection string carries no key that works with local auth off.
            assert name == "APPLICATIONINSIGHTS_CONNECTION_STRING", f"{name}: no connection strings in app settings"
    assert m.render(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == "applicationInsights.properties.ConnectionString"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert "AzureWebJobsSecretStorageType" not in settings


def test_identity_based_connections_use_the_managed_identity():
    settings = m.app_settings()
    prefixes = {name.split("__")[0] for name in settings if "__" in name}
    assert prefixes == {"AzureWebJobsStorage", "DATA_STORAGE"}
    for prefix in prefixes:
        assert settings[f"{prefix}__credential"] == "managedidentity", prefix
        assert str(settings[f"{prefix}__clientId"]) == "identityClientId", prefix
        assert f"{prefix}__blobServiceUri" in settings and f"{prefix}__queueServiceUri" in settings
        assert not any(n.startswith(f"{prefix}__") and n.lower().endswith(("key", "accountkey")) for n in settings)


def test_function_app_settings_leave_flex_managed_settings_out():
    banned = {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
    }
    assert not banned & set(m.app_settings())


# --- secrets anywhere ---------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_no_secrets_in_outputs(path: Path):
    for name, output in m.load(path).outputs.items():
        text = m.render(output["value"])
        assert not re.search(
            r"list\w*\(|ConnectionString|InstrumentationKey|\bkeys?\b|secret|password|code=", text, re.IGNORECASE
        ), f"{m.rel(path)}: output {name} = {text}"
        assert not re.search(r"key|secret|password|connectionstring", name, re.IGNORECASE), f"{m.rel(path)}: output {name}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=m.rel)
def test_keys_are_listed_only_for_the_event_grid_webhook(path: Path):
    text = m.strip_comments(path.read_text())
    calls = re.findall(r"\blist\w*\(", text)
    if path.resolve() == m.SUBSCRIPTION:
        assert calls == ["listKeys(", "listKeys("], calls  # the blob trigger's webhook, the deletion function's
    else:
        assert calls == [], f"{m.rel(path)} lists keys: {calls}"
    assert not re.search(r"AccountKey=|SharedAccessSignature|DefaultEndpointsProtocol", text)


def test_the_webhook_key_is_used_only_inside_the_subscription():
    sub = m.subscription()
    hits = [str(v) for v in m.walk(sub.data) if isinstance(v, str) and "listKeys" in v]
    endpoints = [sub.resource(name).config["properties"]["destination"]["properties"]["endpointUrl"]
                 for name in ("subscription", "deletedSubscription")]
    assert sorted(hits) == sorted(endpoints)


# --- monitoring ---------------------------------------------------------------------------


def test_monitoring_has_local_auth_disabled():
    mon = m.load(m.INFRA / "modules" / "monitoring.bicep")
    (workspace,) = mon.resources("Microsoft.OperationalInsights/workspaces")
    assert workspace.config["properties"]["features"]["disableLocalAuth"] is True
    (component,) = mon.resources(COMPONENTS)
    assert component.config["properties"]["DisableLocalAuth"] is True
    assert m.render(component.config["properties"]["WorkspaceResourceId"]) == "logAnalytics.id"


# --- Event Grid ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["subscription", "deletedSubscription"])
def test_event_grid_uses_managed_identity_for_dead_letters(name):
    (topic,) = m.load(m.INFRA / "modules" / "eventgrid-topic.bicep").resources("Microsoft.EventGrid/systemTopics")
    assert topic.config["identity"] == {"type": "SystemAssigned"}
    props = m.subscription().resource(name).config["properties"]
    assert "deadLetterDestination" not in props, "dead-lettering must go through deadLetterWithResourceIdentity"
    dead = props["deadLetterWithResourceIdentity"]
    assert dead["identity"] == {"type": "SystemAssigned"}
    assert dead["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert props["destination"]["endpointType"] == "WebHook"
    assert props["destination"]["properties"]["minimumTlsVersionAllowed"] == "1.2"
    assert props["destination"]["properties"]["endpointUrl"].startswith("https://")


@pytest.mark.parametrize("name", ["subscription", "deletedSubscription"])
def test_event_grid_retries_then_dead_letters(name):
    sub = m.subscription()
    retry = sub.resolve(sub.resource(name).config["properties"]["retryPolicy"])
    assert retry == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}


# --- role assignments ---------------------------------------------------------------------


def all_grants():
    return m.role_grants(ROLES_DATA) + m.role_grants(ROLES_HOST)


def test_role_assignments_live_only_in_the_role_modules():
    for path in BICEP_FILES:
        if m.rel(path) not in (f"infra/{ROLES_DATA}", f"infra/{ROLES_HOST}"):
            assert not m.load(path).resources("Microsoft.Authorization/roleAssignments"), m.rel(path)


def test_only_data_plane_roles_are_granted():
    allowed = set(m.ROLE_NAMES.values())
    for grant in all_grants():
        assert grant.role in allowed, f"{grant.symbol}: unexpected role {grant.role} (no Owner/Contributor)"


def test_application_roles_are_exactly_these():
    app = {(g.role, g.scope_type.split("/")[-1], g.scope_name) for g in all_grants() if g.principal == "appPrincipalId"}
    assert app == {
        # data account: read sources, write references, poison messages of the blob trigger
        ("Storage Blob Data Reader", "containers", "raw-netcdf"),
        ("Storage Blob Data Contributor", "containers", "refs"),
        ("Storage Queue Data Contributor", "queues", "webjobs-blobtrigger-poison"),
        # the queue trigger of the fan-out backfill: its queue and the poison queue the host moves failures to
        ("Storage Queue Data Contributor", "queues", "reference-requests"),
        ("Storage Queue Data Contributor", "queues", "reference-requests-poison"),
        # host storage: what the Functions host and the blob trigger need
        ("Storage Blob Data Owner", "storageAccounts", "hostStorage.outputs.name"),
        ("Storage Queue Data Contributor", "storageAccounts", "hostStorage.outputs.name"),
        ("Storage Table Data Contributor", "storageAccounts", "hostStorage.outputs.name"),
        # telemetry with Entra authentication
        ("Monitoring Metrics Publisher", "components", "monitoring.outputs.applicationInsightsName"),
    }


def test_data_account_roles_are_scoped_to_containers_and_queues_never_the_account():
    for grant in m.role_grants(ROLES_DATA):
        assert grant.scope_type in (CONTAINERS, QUEUES), f"{grant.symbol} is scoped to {grant.scope_type}"


def test_the_app_cannot_write_its_sources():
    for grant in all_grants():
        if grant.principal == "appPrincipalId" and grant.scope_name == "raw-netcdf":
            assert grant.role == "Storage Blob Data Reader", grant.symbol


def test_event_grid_may_only_write_dead_letters():
    grants = [g for g in all_grants() if g.principal == "eventGridPrincipalId"]
    assert [(g.role, g.scope_type, g.scope_name) for g in grants] == [
        ("Storage Blob Data Contributor", CONTAINERS, "eventgrid-deadletter")
    ]
    args = m.module_call(m.main(), ROLES_HOST).config["params"]
    assert m.render(args["eventGridPrincipalId"]) == "eventGridTopic.outputs.principalId"


def test_deployer_access_is_optional_and_container_scoped():
    grants = [g for g in all_grants() if g.principal == "deployerPrincipalId"]
    assert {(g.role, g.scope_name) for g in grants} == {
        ("Storage Blob Data Contributor", "raw-netcdf"),  # uploads test files
        ("Storage Blob Data Contributor", "refs"),  # the CLI's virtualize and backfill write references and error records
        ("Storage Queue Data Contributor", "reference-requests"),  # ncrefs backfill --queue sends (and status counts)
        ("Storage Queue Data Reader", "reference-requests-poison"),  # ncrefs status counts
    }
    for grant in grants:
        assert grant.conditional, f"{grant.symbol} must depend on a deployer being given"
        assert str(grant.principal_type) == "deployerPrincipalType"
    args = m.module_call(m.main(), ROLES_DATA).config["params"]
    assert m.render(args["deployerPrincipalId"]) == "(grantDeployerDataAccess ? deployerPrincipalId : '')"


def test_service_principals_are_declared_as_such():
    for grant in all_grants():
        if grant.principal in ("appPrincipalId", "eventGridPrincipalId"):
            assert grant.principal_type == "ServicePrincipal", grant.symbol


def test_role_assignment_names_are_deterministic():
    """guid(scope, principal, role): redeploying updates in place instead of failing on a duplicate."""
    for grant in all_grants():
        expected = f"guid({grant.scope_symbol}.id, {grant.principal}, {grant.role_expr})"
        assert m.render(grant.name_expr) == expected, grant.symbol


def test_role_modules_receive_the_identity_principal():
    for path in (ROLES_DATA, ROLES_HOST):
        args = m.module_call(m.main(), path).config["params"]
        assert m.render(args["appPrincipalId"]) == "identity.properties.principalId", path


def test_function_app_waits_for_its_roles():
    deps = m.identifiers(m.module_call(m.main(), FUNCTION_APP).config.get("dependsOn", []))
    assert {"rolesHost", "rolesData"} <= deps
