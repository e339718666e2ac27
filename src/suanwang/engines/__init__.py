"""Inference engines at the edge: launch plans, health probes, and engines of our own.

- :class:`LocalEngines` renders how a replica starts (llama.cpp's ``llama-server`` with the
  threads and parallel slots of :class:`LlamaServer`, or our embedding server, on this
  machine; the vendor engine image on a GPU/NPU cluster; nothing for simulated ones) and
  allocates local ports; :mod:`.commands` holds the pure GPU/NPU renderers.
- :class:`HttpProbe` health-checks engines.
- :mod:`.embeddings` is an OpenAI-compatible embedding server (sentence-transformers);
  :mod:`.simulated` emulates an OpenAI-compatible engine for replicas on simulated clusters.
"""

from suanwang.engines.launch import LlamaServer, LocalEngines, artifact_path
from suanwang.engines.probe import HttpProbe

__all__ = ["HttpProbe", "LlamaServer", "LocalEngines", "artifact_path"]
