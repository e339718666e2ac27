"""Container images of the inference engines, per engine and chip family (pure data).

Rendered launches (:mod:`suanwang.engines.commands`) name them, and the Kubernetes backend
runs a replica's pod in one (an operator overrides them with ``SUANWANG_KUBE_ENGINE_IMAGES``,
e.g. with a registry mirror).
"""

from __future__ import annotations

IMAGES: dict[tuple[str, str], str] = {
    ("vllm", "nvidia"): "vllm/vllm-openai:v0.8.5",
    ("vllm", "metax"): "cr.metax-tech.com/public-ai-release/maca/vllm:maca2.33-py310",
    ("vllm", "hygon-dcu"): "image.sourcefind.cn:5000/dcu/admin/base/vllm:0.8.5-dtk25.04",
    ("vllm-ascend", "ascend"): "quay.io/ascend/vllm-ascend:v0.8.5rc1",
    ("sglang", "nvidia"): "lmsysorg/sglang:v0.4.6.post4-cu124",
    ("sglang", "hygon-dcu"): "image.sourcefind.cn:5000/dcu/admin/base/sglang:0.4.6-dtk25.04",
    ("lmdeploy", "nvidia"): "openmmlab/lmdeploy:v0.8.0-cu12",
    ("lmdeploy", "ascend"): "openmmlab/lmdeploy:v0.8.0-ascend",
    ("mindie", "ascend"): "swr.cn-south-1.myhuaweicloud.com/ascendhub/mindie:2.0.RC1-800I-A2-py311",
    ("infinity", "nvidia"): "michaelf34/infinity:0.0.76",
}
"""Pinned upstream images by (engine, chip family)."""
