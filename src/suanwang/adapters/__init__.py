"""Adapters: the edges that talk to the outside world (storage, HTTP, execution backends)."""
