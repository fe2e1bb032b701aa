"""Fan-out backfill on Azurite's queue service: ``ncrefs backfill --queue`` puts one base64 message per
file on the queue, and the queue trigger, run in-process over the messages as the Functions host runs
it, references each file with the blob trigger's unit of work."""

from __future__ import annotations

import base64
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from scripts.azurite import free_port
from shared.cli import main
from shared.errors import SourceChanged, StorageUnavailable
from shared.fanout import (MAX_DEQUEUE_COUNT, MAX_MESSAGE_BYTES, ensure_queue, message_text, queue_client,
                           queue_endpoint_for)
from shared.paths import BlobLocation
from shared.settings import Settings, get_settings
from shared.storage import Storage
from tests import samples
from tests.conftest import assert_reads_like_original, blob_names

ROOT = Path(__file__).resolve().parents[1]
GOOD, BAD = 190, 10


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Tiny files, made once: five distinct daily files (copied under many names) and the broken kinds."""
    folder = tmp_path_factory.mktemp("queue-files")
    made = {f"day{d}": samples.daily(folder, d) for d in range(5)}
    made.update(empty=samples.empty(folder), random=samples.random_bytes(folder),
                truncated4=samples.truncated_nc4(folder), truncated3=samples.truncated_nc3(folder))
    return made


def raw_queue(settings: Settings, name: str | None = None) -> QueueClient:
    """The queue as the Functions host sees it: raw message text (base64), no encode or decode policy."""
    return QueueClient.from_connection_string(settings.connection_string, name or settings.reference_queue)


def deliver(app_functions, settings: Settings, *, threads: int = 4) -> list[Exception]:
    """Run the queue function over every message, as the host does: base64-decoded body and dequeue count;
    delete on return; on an exception make the message visible again (at once here, after visibilityTimeout
    in Azure) until maxDequeueCount attempts, then move it to <queue>-poison. Returns what was raised."""
    function = app_functions["reference_from_queue"].get_user_function()
    queue, poison = raw_queue(settings), raw_queue(settings, settings.reference_queue + "-poison")
    raised: list[Exception] = []

    def one(message) -> None:
        body = base64.b64decode(message.content).decode()  # the host's messageEncoding: base64
        try:
            function(QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count,
                                  pop_receipt=message.pop_receipt))
        except Exception as error:  # noqa: BLE001 - the host catches it too
            raised.append(error)
            if message.dequeue_count < MAX_DEQUEUE_COUNT:
                queue.update_message(message, visibility_timeout=0)
                return
            try:
                poison.create_queue()
            except ResourceExistsError:
                pass
            poison.send_message(message.content)
        queue.delete_message(message)

    with ThreadPoolExecutor(threads) as pool:
        while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=60)):
            list(pool.map(one, batch))
    return raised


def etags(settings: Settings) -> dict[str, str]:
    service = BlobServiceClient.from_connection_string(settings.connection_string)
    return {b.name: b.etag for b in service.get_container_client(settings.refs_container).list_blobs()}


def test_two_hundred_files_fan_out_through_the_queue(files, queue_settings, app_functions, upload, open_reference, capsys):
    settings = queue_settings
    bad_kinds = ["empty", "random", "random", "truncated4", "truncated4", "truncated3", "truncated3", "empty",
                 "random", "truncated4"]
    for i in range(GOOD):  # ten folders, as an archive has
        upload(files[f"day{i % 5}"], f"y{i % 10}/good_{i:03d}.nc")
    for i, kind in enumerate(bad_kinds):
        upload(files[kind], f"y{i}/bad_{i:02d}.nc")

    assert main(["backfill", "--queue", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["queued"], summary["candidates"], summary["queue"]) == (GOOD + BAD, GOOD + BAD, settings.reference_queue)
    (peeked,) = raw_queue(settings).peek_messages(max_messages=1)
    text = base64.b64decode(peeked.content).decode()  # base64 on the wire, blob names only
    document = json.loads(text)
    assert set(document) == {"container", "name", "etag"} and document["container"] == settings.source_container
    assert len(text.encode()) < MAX_MESSAGE_BYTES

    assert deliver(app_functions, settings) == [], "no file may raise: bad files are recorded, not retried"
    assert raw_queue(settings).get_queue_properties().approximate_message_count == 0

    names = blob_names(BlobServiceClient.from_connection_string(settings.connection_string), settings.refs_container)
    references = [n for n in names if not n.startswith("_")]
    records = [n for n in names if n.startswith("_errors/")]
    assert len(references) == GOOD and all(n.endswith(".json") for n in references)
    assert sorted(records) == sorted(f"_errors/y{i}/bad_{i:02d}.nc.json" for i in range(BAD))
    service = BlobServiceClient.from_connection_string(settings.connection_string)
    codes = {json.loads(service.get_blob_client(settings.refs_container, r).download_blob().readall())["error"]["code"]
             for r in records}
    assert codes == {"not_netcdf", "corrupt_file"}
    for i in (0, 77, 189):  # a sample reads back equal to the original
        with open_reference(f"abfs://{settings.refs_container}/y{i % 10}/good_{i:03d}.json") as ds:
            assert_reads_like_original(ds, files[f"day{i % 5}"])

    assert main(["backfill", "--queue"]) == 0, "nothing left to queue"
    out = capsys.readouterr().out
    assert f"queued 0 of {GOOD + BAD}" in out and f"({GOOD} already current" in out
    assert f"{BAD} skipped: they failed before" in out


def test_a_message_for_a_current_file_writes_nothing(files, queue_settings, app_functions, upload, caplog):
    settings = queue_settings
    upload(files["day1"], "c/current.nc")
    assert main(["backfill", "--queue"]) == 0
    assert deliver(app_functions, settings) == []
    before = etags(settings)
    assert "c/current.json" in before

    source = BlobLocation(settings.source_container, "c/current.nc")
    etag = Storage(settings).head(source).etag.strip('"')
    queue_client(settings, Storage(settings)).send_message(message_text(source, etag))
    with caplog.at_level(logging.INFO, logger="ncrefs.fanout"):
        assert deliver(app_functions, settings) == []
    assert etags(settings) == before, "the reference (and everything else in refs) must be left as it was"
    assert any("reference is current" in r.getMessage() for r in caplog.records)


def test_a_message_for_a_deleted_blob_does_nothing(queue_settings, app_functions, caplog):
    function = app_functions["reference_from_queue"].get_user_function()
    body = message_text(BlobLocation(queue_settings.source_container, "gone/away.nc"), "0x8D")
    with caplog.at_level(logging.INFO, logger="ncrefs.fanout"):
        function(QueueMessage(id="1", body=body, dequeue_count=1))
    assert etags(queue_settings) == {}
    assert any("no longer exists" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"reference raw-netcdf/a.nc please", "not JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"container": "SOURCE", "name": "a.nc", "name": "b.nc"}', "appears twice"),
        (b'{"container": "other-container", "name": "a.nc"}', "not the source container"),
        (b'{"container": "SOURCE", "name": "../refs/a.nc"}', "'..' segment"),
        (b'{"container": "SOURCE", "name": "a/%2e%2e/b.nc"}', "'..' segment"),
        (b'{"container": "SOURCE", "name": "a//b.nc"}', "empty path segment"),
        (b'{"container": "SOURCE", "name": "a\\u0000b.nc"}', "control characters"),
        (b'{"container": "SOURCE"}', "must both be given"),
        (b'{"container": "SOURCE", "name": 7}', "must both be given"),
        (b'{"container": "SOURCE", "name": "a.nc", "etag": 1}', "etag must be a string"),
        (b'{"container": "SOURCE", "name": "a.nc", "reference": {}}', "unknown field"),
        (b'{"container": "SOURCE", "name": "' + b"a" * (MAX_MESSAGE_BYTES + 1) + b'.nc"}', "bytes; a reference request"),
        (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
    ],
)
def test_malformed_messages_are_dropped_with_a_clear_log_line(body, why, queue_settings, app_functions, caplog):
    function = app_functions["reference_from_queue"].get_user_function()
    body = body.replace(b"SOURCE", queue_settings.source_container.encode())
    with caplog.at_level(logging.ERROR, logger="ncrefs.fanout"):
        function(QueueMessage(id="1", body=body, dequeue_count=1))  # returns: the host deletes it, no retries
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ncrefs.fanout"]
    assert line.startswith(f"dropping a message of queue {queue_settings.reference_queue}") and why in line, line
    assert etags(queue_settings) == {}


def test_storage_down_raises_for_the_host_to_retry(queue_settings, app_functions, monkeypatch):
    """A retryable failure (nothing listens where storage should be) raises, at every attempt."""
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    monkeypatch.setenv("DATA_STORAGE", queue_settings.connection_string.split("BlobEndpoint=")[0] + f"BlobEndpoint={dead};")
    get_settings.cache_clear()
    function = app_functions["reference_from_queue"].get_user_function()
    body = message_text(BlobLocation(queue_settings.source_container, "a.nc"), "0x1")
    with pytest.raises(StorageUnavailable):  # after the SDK's own retries (~9 s)
        function(QueueMessage(id="1", body=body, dequeue_count=1))


@pytest.fixture
def source_changes_while_read(monkeypatch, queue_settings):
    """Overwrite the source right after the first ranged read of each attempt (a real new ETag on Azurite):
    the next pinned read fails with source_changed, which is retryable."""
    service = BlobServiceClient.from_connection_string(queue_settings.connection_string)
    original = Storage.open_source

    def open_then_overwrite(self, location, block_size):
        reader = original(self, location, block_size)
        client = service.get_blob_client(location.container, location.path)
        client.upload_blob(client.download_blob().readall(), overwrite=True)
        return reader

    monkeypatch.setattr(Storage, "open_source", open_then_overwrite)


def test_a_retryable_failure_raises_and_the_last_attempt_leaves_an_error_record(
        tmp_path, queue_settings, app_functions, upload, source_changes_while_read):
    settings = queue_settings
    upload(samples.nc4_late_metadata(tmp_path), "late/changing.nc")  # needs reads after the first
    function = app_functions["reference_from_queue"].get_user_function()
    body = message_text(BlobLocation(settings.source_container, "late/changing.nc"), "0x1")
    with pytest.raises(SourceChanged):
        function(QueueMessage(id="1", body=body, dequeue_count=1))
    assert etags(settings) == {}, "no reference and no error record before the last attempt"

    client = queue_client(settings, Storage(settings))  # then the host's whole life of that message
    ensure_queue(client)
    client.send_message(body)
    raised = deliver(app_functions, settings, threads=1)
    assert len(raised) == MAX_DEQUEUE_COUNT and all(isinstance(e, SourceChanged) for e in raised)
    assert list(etags(settings)) == ["_errors/late/changing.nc.json"]
    service = BlobServiceClient.from_connection_string(settings.connection_string)
    record = json.loads(service.get_blob_client(settings.refs_container, "_errors/late/changing.nc.json")
                        .download_blob().readall())
    assert record["error"]["code"] == "source_changed" and record["error"]["retryable"] is True
    assert record["error"]["message"].startswith(f"Given up after {MAX_DEQUEUE_COUNT} attempts")
    assert "--retry-failed" in record["error"]["hint"]
    assert raw_queue(settings, settings.reference_queue + "-poison").get_queue_properties().approximate_message_count == 1
    assert raw_queue(settings).get_queue_properties().approximate_message_count == 0


def test_backfill_queue_refuses_what_the_function_cannot_take(queue_settings, capsys):
    assert main(["backfill", "--queue", "--container", "archive-x", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "invalid_request" and "only the source container" in error["message"]
    assert "without --queue" in error["hint"]
    with pytest.raises(SystemExit) as exited:
        main(["backfill", "--queue", "--workers", "4"])
    assert exited.value.code == 2 and "do not apply to backfill --queue" in capsys.readouterr().err


def test_backfill_queue_says_when_the_queue_service_does_not_answer(files, queue_settings, upload, monkeypatch, capsys):
    upload(files["day0"], "a.nc")
    nowhere = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    monkeypatch.setenv("DATA_STORAGE", queue_settings.connection_string.split("QueueEndpoint=")[0] + f"QueueEndpoint={nowhere};")
    get_settings.cache_clear()
    assert main(["backfill", "--queue"]) == 1
    err = capsys.readouterr().err
    assert "storage_unavailable" in err and "queue service did not answer" in err and "QueueEndpoint=" in err
    assert "AccountKey" not in err


@pytest.mark.parametrize(
    ("blob", "queue"),
    [
        ("https://acct01.blob.core.windows.net", "https://acct01.queue.core.windows.net"),
        ("https://acct01.dfs.core.windows.net/", "https://acct01.queue.core.windows.net"),
        ("https://acct01.z12.blob.storage.azure.net", "https://acct01.z12.queue.storage.azure.net"),
        ("https://acct01.blob.core.chinacloudapi.cn", "https://acct01.queue.core.chinacloudapi.cn"),
        ("http://127.0.0.1:10000/devstoreaccount1", "http://127.0.0.1:10001/devstoreaccount1"),
        ("https://storage.example.org", None),
    ],
)
def test_queue_endpoint_from_the_blob_endpoint(blob, queue):
    assert queue_endpoint_for(blob) == queue


def test_identity_connections_take_the_queue_service_uri(monkeypatch):
    for name in ("DATA_STORAGE", "AzureWebJobsStorage", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_STORAGE__blobServiceUri", "https://acct01.blob.core.windows.net")
    settings = Settings()
    assert queue_client(settings, Storage(settings)).url == "https://acct01.queue.core.windows.net/reference-requests"
    monkeypatch.setenv("DATA_STORAGE__queueServiceUri", "https://acct01.privatelink.queue.core.windows.net")
    settings = Settings()
    assert queue_client(settings, Storage(settings)).url.startswith("https://acct01.privatelink.queue.core.windows.net/")
    # --account-name from the CLI replaces the whole connection, queue endpoint included
    other = settings.with_connection(account_name="acct02")
    assert queue_client(other, Storage(other)).url == "https://acct02.queue.core.windows.net/reference-requests"


@pytest.mark.parametrize("name", ["ab", "Refs", "a--b", "-ab", "a" * 57, "a_b"])
def test_reference_queue_names_are_checked(name, monkeypatch, capsys):
    monkeypatch.setenv("REFERENCE_QUEUE", name)
    assert main(["status"]) == 2
    assert "REFERENCE_QUEUE" in capsys.readouterr().err


def test_host_json_queue_settings_match_the_function():
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT, "the function's last attempt is the host's"
    assert queues["messageEncoding"] == "base64", "backfill --queue sends base64 (TextBase64EncodePolicy)"
    assert 1 <= queues["batchSize"] and queues["newBatchThreshold"] >= 0
    for timespan in ("visibilityTimeout", "maxPollingInterval"):
        h, m, s = (int(p) for p in queues[timespan].split(":"))
        assert 0 < h * 3600 + m * 60 + s <= 600, timespan


def test_queue_trigger_binding(app_functions):
    (binding,) = json.loads(app_functions["reference_from_queue"].get_function_json())["bindings"]
    assert binding == {"direction": "IN", "type": "queueTrigger", "name": "message", "queueName": "%REFERENCE_QUEUE%",
                       "connection": "DATA_STORAGE"}
