"""One blueprint per trigger; each only translates between its trigger and ``shared``."""
