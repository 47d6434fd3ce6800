"""The job contract: the only code shared by API, UI, batch and workers (torch-free)."""
