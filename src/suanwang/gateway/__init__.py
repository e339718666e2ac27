"""The OpenAI-compatible gateway: its own ASGI app, runnable as several stateless processes."""
