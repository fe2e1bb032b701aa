"""The function JSON the host reads: routes, methods, auth, blob path, connection, source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bindings(app_functions, name):
    return json.loads(app_functions[name].get_function_json())["bindings"]


def test_function_json(app_functions):
    assert set(app_functions) == {"dataset_build", "dataset_show", "generate_reference", "health", "reference_from_blob",
                                  "reference_from_queue", "source_deleted", "status"}
    (blob,) = bindings(app_functions, "reference_from_blob")
    assert blob == {"direction": "IN", "type": "blobTrigger", "name": "client", "path": "%SOURCE_CONTAINER%/{name}",
                    "connection": "DATA_STORAGE", "source": "EventGrid"}
    generate = bindings(app_functions, "generate_reference")[0]
    assert (generate["route"], generate["methods"], generate["authLevel"]) == ("generate-reference", ["POST"], "FUNCTION")
    show = bindings(app_functions, "dataset_show")[0]
    assert (show["route"], show["methods"], show["authLevel"]) == ("datasets/{name}", ["GET"], "FUNCTION")
    build = bindings(app_functions, "dataset_build")[0]
    assert (build["route"], build["methods"], build["authLevel"]) == ("datasets/{name}/build", ["POST"], "FUNCTION")
    status = bindings(app_functions, "status")[0]
    assert (status["route"], status["methods"], status["authLevel"]) == ("status", ["GET"], "FUNCTION")
    health = bindings(app_functions, "health")[0]
    assert (health["route"], health["methods"], health["authLevel"]) == ("health", ["GET"], "ANONYMOUS")
    (deleted,) = bindings(app_functions, "source_deleted")  # BlobDeleted through Event Grid (functions/blob_deleted.py)
    assert deleted == {"direction": "IN", "type": "eventGridTrigger", "name": "event"}


def test_polling_source_for_core_tools_and_a_clear_error_otherwise():
    probe = ("import json, function_app; fn = [f for f in function_app.app.get_functions() "
             "if f.get_function_name() == 'reference_from_blob'][0]; print(fn.get_function_json())")
    env = {**os.environ, "BLOB_TRIGGER_SOURCE": "LogsAndContainerScan"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["bindings"][0]["source"] == "LogsAndContainerScan"
    env["BLOB_TRIGGER_SOURCE"] = "Polling"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "BLOB_TRIGGER_SOURCE='Polling'" in done.stderr


def test_host_json():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["functionTimeout"]
    assert "Request" in host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"]
    assert host["extensions"]["blobs"]["poisonBlobThreshold"] >= 1
    assert host["extensions"]["blobs"]["maxDegreeOfParallelism"] >= 1
