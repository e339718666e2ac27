"""Labels of the console's operator pages: utilisation, queues, WAN links and transfers,
revenue (ops_pages.py): zh-CN and English (same keys in both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# fmt: off
MESSAGES: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "ops_1h": "最近 1 小时", "ops_24h": "最近 24 小时", "ops_7d": "最近 7 天",
        "ops_window": "时间范围", "ops_by": "分组", "ops_step": "每点 {s} 秒",
        "ops_busy_over_time": "占用卡数（平均）", "ops_sim_dashed": "虚线：模拟集群",
        "ops_split": "训练 / 推理", "ops_training": "训练（普通作业）",
        "ops_inference": "推理（模型服务副本）", "ops_now": "当前",
        "ops_by_tenant_chip": "按租户和芯片", "ops_by_reason": "按等待原因",
        "ops_cards_asked": "申请卡数", "ops_oldest": "最早提交", "ops_waited": "最长等待",
        "ops_no_queue": "没有排队的作业",
        "ops_links": "广域网链路", "ops_link_real_hint": "两端区域都有传输代理时为真实链路",
        "ops_regions": "区域", "ops_bandwidth": "带宽", "ops_latency": "往返延迟",
        "ops_link_cap": "传输限速", "ops_transfers": "跨区域传输", "ops_route": "路径",
        "ops_progress": "已传 / 总量", "ops_rate": "速率",
        "ops_tokens": "令牌数", "ops_card_hours": "卡时", "ops_amount_by_tenant": "各租户金额",
        "ops_by_tenant": "按租户", "ops_by_model": "按模型 / 芯片",
    },
    "en": {
        "ops_1h": "last hour", "ops_24h": "last 24 hours", "ops_7d": "last 7 days",
        "ops_window": "Window", "ops_by": "Split by", "ops_step": "{s} s a point",
        "ops_busy_over_time": "Busy cards (average)",
        "ops_sim_dashed": "dashed: simulated clusters",
        "ops_split": "Training / inference", "ops_training": "Training (ordinary jobs)",
        "ops_inference": "Inference (serving replicas)", "ops_now": "Now",
        "ops_by_tenant_chip": "By tenant and chip", "ops_by_reason": "By the reason they wait",
        "ops_cards_asked": "Cards asked", "ops_oldest": "Oldest submitted",
        "ops_waited": "Longest wait", "ops_no_queue": "Nothing is queued",
        "ops_links": "WAN links",
        "ops_link_real_hint": "real when both regions have a transfer agent",
        "ops_regions": "Regions", "ops_bandwidth": "Bandwidth", "ops_latency": "Round trip",
        "ops_link_cap": "Transfer cap", "ops_transfers": "Transfers between regions",
        "ops_route": "Route", "ops_progress": "Done / total", "ops_rate": "Rate",
        "ops_tokens": "Tokens", "ops_card_hours": "Card-hours",
        "ops_amount_by_tenant": "Amount by tenant",
        "ops_by_tenant": "By tenant", "ops_by_model": "By model / chip",
    },
}
# fmt: on
