"""Developer scripts: Azurite, the local demo, set-up."""
