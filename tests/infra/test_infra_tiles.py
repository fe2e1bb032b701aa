"""The optional tile server (modules/tiles-app.bicep): off by default, identity-based, read-only on the data."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra_model as m

TILES_APP = "modules/tiles-app.bicep"


def tiles_site():
    (site,) = m.load(m.INFRA / TILES_APP).resources("Microsoft.Web/sites")
    return site


def test_tiles_are_off_by_default():
    main = m.main()
    assert main.param_default("deployTiles") is False
    assert m.main_parameters()["deployTiles"]["value"] == "${NCREFS_DEPLOY_TILES=false}"
    call = m.module_call(main, TILES_APP)
    assert str(call.condition) == "deployTiles"
    (identity,) = [u for u in main.resources("Microsoft.ManagedIdentity/userAssignedIdentities") if u.symbol == "tilesIdentity"]
    assert str(identity.condition) == "deployTiles"
    assert {"rolesHost", "rolesData"} <= m.identifiers(call.config.get("dependsOn", []))


def test_tiles_app_is_flex_python_https_with_its_own_identity():
    site = tiles_site()
    assert site.config["kind"] == "functionapp,linux"
    props = site.config["properties"]
    assert props["httpsOnly"] is True and props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.12"}
    assert site.config["identity"]["type"] == "UserAssigned"
    args = m.module_call(m.main(), TILES_APP).config["params"]
    assert m.render(args["identityId"]) == "tilesIdentity.id"
    assert m.render(args["identityClientId"]) == "tilesIdentity.properties.clientId"
    storage = props["functionAppConfig"]["deployment"]["storage"]
    assert storage["authentication"]["type"] == "UserAssignedIdentity"


def test_tiles_app_settings_are_identity_based_and_hold_no_secrets():
    settings = {s["name"]: s["value"] for s in tiles_site().config["properties"]["siteConfig"]["appSettings"]}
    assert settings["DATA_STORAGE__credential"] == settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "DATA_STORAGE" not in settings and "AzureWebJobsStorage" not in settings
    for name, value in settings.items():
        assert not re.search(r"list\w*\(|AccountKey|SharedAccessSignature|sig=", m.render(value), re.IGNORECASE), name
    assert {"SOURCE_CONTAINER", "REFS_CONTAINER"} <= set(settings)


def test_tiles_identity_only_reads_the_data_containers():
    data = [g for g in m.role_grants("modules/roles-data.bicep") if g.principal == "tilesPrincipalId"]
    assert {(g.role, g.scope_name) for g in data} == {("Storage Blob Data Reader", "raw-netcdf"),
                                                      ("Storage Blob Data Reader", "refs")}
    host = [g for g in m.role_grants("modules/roles-host.bicep") if g.principal == "tilesPrincipalId"]
    assert {(g.role, g.scope_type.split("/")[-1]) for g in host} == {("Storage Blob Data Owner", "storageAccounts"),
                                                                      ("Monitoring Metrics Publisher", "components")}
    for grant in data + host:
        assert grant.conditional and grant.principal_type == "ServicePrincipal", grant.symbol
        assert m.render(grant.name_expr) == f"guid({grant.scope_symbol}.id, tilesPrincipalId, {grant.role_expr})"
    for path in ("modules/roles-data.bicep", "modules/roles-host.bicep"):
        args = m.module_call(m.main(), path).config["params"]
        assert m.render(args["tilesPrincipalId"]) == "(deployTiles ? tilesIdentity.properties.principalId : '')", path
