"""The fan-out backfill's infrastructure: the queue and its poison queue in the data account, the app
setting that names it, the roles on exactly those queues, host.json's queue settings against the parser
sizing, and the Flex maximum instance count as a parameter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra_model as m

QUEUES = "Microsoft.Storage/storageAccounts/queueServices/queues"
DATA_CONTAINERS = "modules/data-containers.bicep"
ROLES_DATA = "modules/roles-data.bicep"


def seconds(timespan: str) -> int:
    h, mi, s = (int(part) for part in timespan.split(":"))
    return h * 3600 + mi * 60 + s


def test_the_queue_and_its_poison_queue_are_created_in_the_data_account():
    module = m.load(m.INFRA / DATA_CONTAINERS)
    created = {m.resolve_in_module(DATA_CONTAINERS, q.config["name"]) for q in module.resources(QUEUES) if not q.existing}
    assert {"reference-requests", "reference-requests-poison"} <= created
    main = m.main()
    assert main.param_default("referenceQueueName") == m.sample_settings()["REFERENCE_QUEUE"] == "reference-requests"
    # the host names the poison queue <queue>-poison (and the app's status reads it by that name)
    assert main.variables["referencePoisonQueueName"]["value"] == "${referenceQueueName}-poison"
    sys.path.insert(0, str(m.ROOT))
    from shared.fanout import POISON_SUFFIX
    from shared.settings import Settings

    assert POISON_SUFFIX == "-poison" and Settings.model_fields["reference_queue"].default == "reference-requests"
    # 56 + "-poison" = 63, Azure's longest queue name; the app refuses longer names too
    assert main.decorator("referenceQueueName", "max_length") == 56
    assert main.decorator("referenceQueueName", "min_length") == 3


def test_the_app_setting_names_the_queue():
    settings = m.app_settings()
    assert str(settings["REFERENCE_QUEUE"]) == "referenceQueueName"
    assert m.resolve_in_module("modules/function-app.bicep", settings["REFERENCE_QUEUE"]) == "reference-requests"
    assert m.resolve_in_module("modules/function-app.bicep", settings["DATA_STORAGE__queueServiceUri"]) == \
        "dataContainers.outputs.queueEndpoint"
    for path in (DATA_CONTAINERS, ROLES_DATA, "modules/function-app.bicep"):
        assert str(m.module_call(m.main(), path).config["params"]["referenceQueueName"]) == "referenceQueueName", path
    assert str(m.main().outputs["REFERENCE_QUEUE"]["value"]) == "referenceQueueName"


def test_queue_roles_are_scoped_to_the_two_queues():
    grants = [g for g in m.role_grants(ROLES_DATA) if g.scope_name in ("reference-requests", "reference-requests-poison")]
    app = {(g.role, g.scope_name) for g in grants if g.principal == "appPrincipalId"}
    assert app == {("Storage Queue Data Contributor", "reference-requests"),
                   ("Storage Queue Data Contributor", "reference-requests-poison")}
    for grant in grants:
        assert grant.scope_type == QUEUES, grant.symbol
        assert grant.conditional == (grant.principal == "deployerPrincipalId"), grant.symbol


def test_host_queue_settings_fit_the_parsers_and_the_function_timeout():
    """Messages an instance takes at once (batchSize + newBatchThreshold), plus the blob trigger's, wait for
    PARSE_WORKERS parsers: every round of waiting plus a parse must fit functionTimeout."""
    host = json.loads((m.ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    main = m.main()
    workers, timeout = main.param_default("parseWorkers"), main.param_default("parseTimeoutSeconds")
    at_once = queues["batchSize"] + queues["newBatchThreshold"] + host["extensions"]["blobs"]["maxDegreeOfParallelism"]
    rounds = -(-at_once // workers)
    assert rounds * timeout + 60 <= seconds(host["functionTimeout"]), (at_once, workers, timeout)
    assert queues["maxDequeueCount"] == 5 and queues["messageEncoding"] == "base64"
    # a failed message comes back after visibilityTimeout: all attempts within a few minutes, not hours
    assert queues["maxDequeueCount"] * seconds(queues["visibilityTimeout"]) <= 600


def test_the_flex_maximum_instance_count_is_a_parameter():
    assert m.main_parameters()["maximumInstanceCount"]["value"] == "${NCREFS_MAXIMUM_INSTANCE_COUNT=100}"
    assert m.main_parameters()["referenceQueueName"]["value"] == "${NCREFS_REFERENCE_QUEUE=reference-requests}"
    assert str(m.module_call(m.main(), "modules/function-app.bicep").config["params"]["maximumInstanceCount"]) == \
        "maximumInstanceCount"
