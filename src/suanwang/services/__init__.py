"""Application layer: use cases over the ports (units of work, backends, clock)."""
