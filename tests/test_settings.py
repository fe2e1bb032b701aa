"""One list of settings: what the app reads is what local.settings.sample.json lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.settings import Settings, app_setting_names

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def test_sample_lists_exactly_the_settings_the_app_reads():
    assert set(SAMPLE) == app_setting_names()


def test_every_setting_the_function_code_names_is_listed():
    code = "\n".join(p.read_text() for p in [ROOT / "function_app.py", *sorted((ROOT / "functions").glob("*.py"))])
    named = set(re.findall(r"%(\w+)%", code)) | set(re.findall(r'connection="(\w+)"', code)) | set(re.findall(r'os\.environ\.get\("(\w+)"', code))
    assert named and named <= set(SAMPLE)


def test_sample_values_are_azurite_defaults_the_core_accepts(monkeypatch):
    for name, value in SAMPLE.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.connection_string == "UseDevelopmentStorage=true"
    assert (settings.source_container, settings.refs_container) == ("raw-netcdf", "refs")
    assert SAMPLE["BLOB_TRIGGER_SOURCE"] == "LogsAndContainerScan"


def test_local_settings_json_is_ignored_by_git():
    assert "local.settings.json" in (ROOT / ".gitignore").read_text().splitlines()
