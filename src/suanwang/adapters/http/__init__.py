"""HTTP adapter: the REST API under ``/api/v1`` (FastAPI)."""
