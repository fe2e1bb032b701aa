"""The STAC catalog: an Item per referenced file, a Collection per dataset, one static catalog under
``<refs container>/_stac/`` (see ``store``), kept current by the pipeline and the datasets service,
rebuilt whole by ``ncrefs stac build``."""

from shared.catalog.store import (
    ROOT,
    STAC_PREFIX,
    BuildSummary,
    CatalogLookAhead,
    build,
    catalogued,
    collection_path,
    dataset_changed,
    dataset_deleted,
    describe_reference,
    folder_catalog_path,
    item_path,
    link_items,
    reference_written,
    remove_item,
    remove_items,
    show,
)

__all__ = ["ROOT", "STAC_PREFIX", "BuildSummary", "CatalogLookAhead", "build", "catalogued", "collection_path", "dataset_changed", "dataset_deleted",
           "describe_reference", "folder_catalog_path", "item_path", "link_items", "reference_written", "remove_item", "remove_items", "show"]
