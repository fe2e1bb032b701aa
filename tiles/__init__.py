"""The ncrefs tile server (titiler.xarray over references and datasets): an optional extra, never in the ingestion app."""
