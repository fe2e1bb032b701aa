"""The phase-2 script (azd postdeploy hook) run against stand-ins for `az` and `curl`:
it waits for the blob extension key without reading it, deploys the subscription template
into the topic's resource group with main.bicep's outputs, retries, and fails loudly."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra_model as m

SECRET = "THE-BLOBS-EXTENSION-KEY"
# The only question the script may ask about the keys: whether both webhook keys exist.
KEY_QUERY = "systemKeys.blobs_extension != `null` && systemKeys.eventgrid_extension != `null`"

FAKE_AZ = r'''#!{python}
"""Stand-in for the Azure CLI: logs argv, answers the few calls the script makes."""
import json, os, sys
state = os.environ["FAKE_AZ_DIR"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\n")

def bump(name):
    path = os.path.join(state, name)
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(n))
    return n

def option(name):
    return args[args.index(name) + 1] if name in args else None

if args[:2] == ["account", "show"]:
    sys.exit(int(os.environ.get("FAKE_AZ_LOGGED_OUT", "0")))
if args[:3] == ["functionapp", "keys", "list"]:
    ready = bump("keys") >= int(os.environ.get("FAKE_KEY_AFTER", "1"))
    query = option("--query") or ""
    if query == KEY_QUERY:
        print("true" if ready else "false")
    else:  # anything else would expose the key
        print(SECRET if ready else "")
    sys.exit(0)
if args[:3] == ["deployment", "group", "show"]:
    name = (option("--query") or "").split(".")[2]
    print("from-deployment-" + name)
    sys.exit(0)
if args[:3] == ["deployment", "group", "create"]:
    sys.exit(0 if bump("creates") > int(os.environ.get("FAKE_CREATE_FAILS", "0")) else 1)
sys.exit(f"fake az: unexpected call {{args}}")
'''.replace("SECRET", repr(SECRET)).replace("KEY_QUERY", repr(KEY_QUERY))

FAKE_CURL = """#!/bin/sh
echo "$@" >> "$FAKE_AZ_DIR/curl.log"
"""

OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg-app",
    "FUNCTION_APP_NAME": "func-abc",
    "HEALTH_URL": "https://func-abc.azurewebsites.net/api/health",
    "SOURCE_CONTAINER": "raw-netcdf",
    "EVENTGRID_SYSTEM_TOPIC_NAME": "evgt-abc",
    "EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-data",
    "EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID": (
        "/subscriptions/s/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/sthostabc"
    ),
    "EVENTGRID_DEADLETTER_CONTAINER": "eventgrid-deadletter",
}


@pytest.fixture
def fake_cli(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("az", FAKE_AZ.format(python=sys.executable)), ("curl", FAKE_CURL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def run(*args: str, env: dict[str, str] | None = None, shell: str = "sh"):
        base = {k: v for k, v in os.environ.items() if k not in OUTPUTS}
        base.update(
            {
                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "FAKE_AZ_DIR": str(state),
                "NCREFS_KEY_WAIT_SECONDS": "0",
                "NCREFS_RETRY_SECONDS": "0",
            }
        )
        base.update(env if env is not None else OUTPUTS)
        done = subprocess.run(
            [shell, str(m.POSIX_HOOK), *args], check=False, env=base, capture_output=True, text=True, timeout=60
        )
        calls_file = state / "calls.jsonl"
        calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
        curl = (state / "curl.log").read_text().splitlines() if (state / "curl.log").exists() else []
        return done, calls, curl

    return run


def creates(calls):
    return [c for c in calls if c[:3] == ["deployment", "group", "create"]]


def parameters(call):
    start = call.index("--parameters") + 1
    end = next((i for i in range(start, len(call)) if call[i].startswith("--")), len(call))
    return dict(arg.split("=", 1) for arg in call[start:end])


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_script_is_valid_posix_shell(shell):
    if not shutil.which(shell):
        pytest.skip(f"{shell} not installed")
    done = subprocess.run([shell, "-n", str(m.POSIX_HOOK)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_under_azd_it_deploys_the_subscription_with_main_outputs(fake_cli):
    done, calls, curl = fake_cli()
    assert done.returncode == 0, done.stderr
    (create,) = creates(calls)
    assert create[create.index("--resource-group") + 1] == "rg-data"
    assert Path(create[create.index("--template-file") + 1]).resolve() == m.SUBSCRIPTION.resolve()
    assert parameters(create) == {
        "systemTopicName": "evgt-abc",
        "functionAppName": "func-abc",
        "functionAppResourceGroup": "rg-app",
        "sourceContainerName": "raw-netcdf",
        "deadLetterStorageAccountId": OUTPUTS["EVENTGRID_DEADLETTER_STORAGE_ACCOUNT_ID"],
        "deadLetterContainerName": "eventgrid-deadletter",
    }
    assert set(parameters(create)) <= set(m.subscription().params)
    assert any(OUTPUTS["HEALTH_URL"] in line for line in curl), "the app is woken before waiting for its key"


def test_the_key_is_never_read_or_printed(fake_cli):
    done, calls, _ = fake_cli()
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    for call in calls:
        if call[:3] == ["functionapp", "keys", "list"]:
            assert call[call.index("--query") + 1] == KEY_QUERY
        assert not any(SECRET in arg for arg in call)


def test_it_waits_until_the_blob_extension_key_exists(fake_cli):
    done, calls, curl = fake_cli(env={**OUTPUTS, "FAKE_KEY_AFTER": "3"})
    assert done.returncode == 0, done.stderr
    assert len([c for c in calls if c[:3] == ["functionapp", "keys", "list"]]) == 3
    assert len(curl) >= 3
    assert len(creates(calls)) == 1


def test_it_gives_up_without_a_key_and_creates_nothing(fake_cli):
    done, calls, _ = fake_cli(env={**OUTPUTS, "FAKE_KEY_AFTER": "99", "NCREFS_KEY_WAIT_ATTEMPTS": "2"})
    assert done.returncode != 0
    assert "blobs_extension" in done.stderr and "reference_from_blob" in done.stderr
    assert "eventgrid_extension" in done.stderr and "source_deleted" in done.stderr
    assert creates(calls) == []


def test_it_retries_the_subscription_when_validation_fails_once(fake_cli):
    done, calls, _ = fake_cli(env={**OUTPUTS, "FAKE_CREATE_FAILS": "1"})
    assert done.returncode == 0, done.stderr
    assert len(creates(calls)) == 2


def test_it_fails_after_three_attempts(fake_cli):
    done, calls, _ = fake_cli(env={**OUTPUTS, "FAKE_CREATE_FAILS": "9"})
    assert done.returncode != 0
    assert len(creates(calls)) == 3


@pytest.mark.parametrize("missing", sorted(OUTPUTS))
def test_missing_outputs_stop_it_before_any_change(fake_cli, missing):
    env = {k: v for k, v in OUTPUTS.items() if k != missing}
    done, calls, _ = fake_cli(env=env)
    assert done.returncode != 0
    assert missing in done.stderr
    assert creates(calls) == []


def test_signed_out_cli_is_reported(fake_cli):
    done, calls, _ = fake_cli(env={**OUTPUTS, "FAKE_AZ_LOGGED_OUT": "1"})
    assert done.returncode != 0
    assert "az login" in done.stderr
    assert creates(calls) == []


def test_by_hand_it_reads_the_outputs_of_the_main_deployment(fake_cli):
    done, calls, _ = fake_cli("rg-manual", "ncrefs-main", env={})
    assert done.returncode == 0, done.stderr
    shows = [c for c in calls if c[:3] == ["deployment", "group", "show"]]
    assert {(c[c.index("--resource-group") + 1], c[c.index("--name") + 1]) for c in shows} == {("rg-manual", "ncrefs-main")}
    read = {c[c.index("--query") + 1].split(".")[2] for c in shows}
    assert read <= set(m.main().outputs) and len(read) == len(OUTPUTS) - 1
    (create,) = creates(calls)
    assert create[create.index("--resource-group") + 1] == "from-deployment-EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP"
    assert parameters(create)["functionAppResourceGroup"] == "rg-manual"
    assert parameters(create)["functionAppName"] == "from-deployment-FUNCTION_APP_NAME"
