"""Datasets: many files under one prefix combined into one virtual dataset (Icechunk, kerchunk
Parquet/JSON), defined in storage and kept current as files arrive (see ``service``)."""

from shared.datasets.model import DatasetDefinition, DatasetState, Member
from shared.datasets.service import (
    DatasetChange,
    DatasetView,
    build,
    create,
    delete,
    list_definitions,
    load_definition,
    remove_members,
    show,
    update_for_deleted_source,
    update_for_source,
)

__all__ = ["DatasetChange", "DatasetDefinition", "DatasetState", "DatasetView", "Member", "build", "create", "delete",
           "list_definitions", "load_definition", "remove_members", "show", "update_for_deleted_source",
           "update_for_source"]
