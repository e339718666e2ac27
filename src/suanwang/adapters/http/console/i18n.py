"""The console's message catalogue: zh-CN (the default) and English.

Every label a template shows comes from here through :func:`translator`; a key missing
from a language falls back to English and then to the key itself, and a unit test checks
that both languages have the same keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from suanwang.adapters.http.console import messages_apps, messages_ops, messages_tenant

LANGS: Final = ("zh", "en")
DEFAULT_LANG: Final = "zh"
HTML_LANG: Final = {"zh": "zh-CN", "en": "en"}

# fmt: off
_CORE: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "app": "算网控制台", "login": "登录", "logout": "退出", "api_key": "API 密钥",
        "login_hint": "用 API 密钥登录；密钥只用于换取会话，不会保存在浏览器里。",
        "login_failed": "密钥无效、已吊销或已过期。",
        "fleet": "算力总览", "tenants": "租户与配额", "jobs": "作业", "audit": "审计日志",
        "my_jobs": "我的作业", "keys": "API 密钥", "usage": "用量与账单", "quota": "配额",
        "cards": "卡数", "pflops": "FP16 算力 (PFLOPS)", "region": "区域", "cluster": "集群",
        "chip": "芯片", "clusters": "集群", "nodes": "节点", "used": "已用", "busy": "占用",
        "simulated": "模拟", "real": "真实", "mixed": "部分模拟", "health": "健康",
        "backend": "后端", "kind": "类型", "state": "状态", "name": "名称",
        "total": "合计", "by_region": "按区域", "by_chip": "按芯片", "by_cluster": "按集群",
        "tenant": "租户", "family": "芯片系列", "nominal": "配额（卡）",
        "cohort": "队列组", "weight": "公平份额权重", "save": "保存", "saved": "已保存。",
        "not_saved": "未保存：请修正标出的字段。", "unlimited": "不限",
        "quota_help": "每个芯片系列可同时使用的卡数；留空表示不限。",
        "filter": "筛选", "all": "全部", "prev": "上一页", "next": "下一页", "page": "第 {n} 页",
        "id": "编号", "created": "创建时间", "updated": "更新时间", "priority": "优先级",
        "attempts": "尝试", "reason": "原因", "cancel": "取消作业", "logs": "日志",
        "events": "事件", "exit_code": "退出码", "started": "开始", "ended": "结束",
        "lost_work": "损失的工作（秒）", "preemptions": "抢占与恢复",
        "submit_job": "提交本机作业", "command": "命令（sh -c）", "cards_per_node": "每节点卡数",
        "submit": "提交", "job_submitted": "作业已提交。", "no_logs": "（暂无输出）",
        "following": "跟随中…", "finished": "已结束",
        "create_key": "创建密钥", "scope": "权限范围", "prefix": "前缀", "expires": "过期",
        "revoked": "已吊销", "revoke": "吊销", "active": "有效",
        "secret_once": "新密钥只显示这一次，请立即复制保存：",
        "period": "账期", "item": "项目", "meter": "计量", "quantity": "数量",
        "amount": "金额", "download_csv": "下载账单 CSV", "bill": "账单", "tier": "价格档",
        "prompt_tokens": "输入 tokens", "completion_tokens": "输出 tokens", "card_ms": "卡·毫秒",
        "entries": "条目", "none": "无", "at": "时间", "actor": "操作者", "action": "操作",
        "resource": "对象", "outcome": "结果", "older": "更早", "newest": "最新",
        "error": "出错了", "not_found": "找不到该页面或对象（或不属于你）。",
        "forbidden": "你的密钥权限不足以进行此操作。", "back": "返回",
        "csrf_failed": "表单已过期或来源不明（CSRF 校验失败），请刷新后重试。",
        "language": "English", "utilisation": "利用率", "view": "查看",
        "operator": "运营方", "signed_in_as": "当前身份", "borrowing": "借用上限",
        "lending": "出借上限", "chart_pflops": "各区域 FP16 PFLOPS",
        "bad_int": "请输入 0 到 {max} 之间的整数", "bad_weight": "请输入大于 0 的数字",
        "queues": "排队", "wan": "广域网链路与传输", "revenue": "收入",
        "deployments": "部署与模型", "datasets": "数据集", "knowledge": "知识库", "apps": "应用",
    },
    "en": {
        "app": "Suanwang console", "login": "Log in", "logout": "Log out", "api_key": "API key",
        "login_hint": "Log in with an API key; it is exchanged for a session and never kept "
                      "in the browser.",
        "login_failed": "The key is invalid, revoked or expired.",
        "fleet": "Fleet", "tenants": "Tenants & quotas", "jobs": "Jobs", "audit": "Audit log",
        "my_jobs": "My jobs", "keys": "API keys", "usage": "Usage & bills", "quota": "Quota",
        "cards": "Cards", "pflops": "FP16 PFLOPS", "region": "Region", "cluster": "Cluster",
        "chip": "Chip", "clusters": "Clusters", "nodes": "Nodes", "used": "In use",
        "busy": "Busy", "simulated": "simulated", "real": "real", "mixed": "partly simulated",
        "health": "Health", "backend": "Backend", "kind": "Kind", "state": "State",
        "name": "Name", "total": "Total", "by_region": "By region", "by_chip": "By chip",
        "by_cluster": "By cluster", "tenant": "Tenant", "family": "Chip family",
        "nominal": "Quota (cards)", "cohort": "Cohort", "weight": "Fair-share weight",
        "save": "Save", "saved": "Saved.", "not_saved": "Not saved: fix the marked fields.",
        "unlimited": "unlimited",
        "quota_help": "Cards of each chip family in use at once; empty means no limit.",
        "filter": "Filter", "all": "all", "prev": "Previous", "next": "Next",
        "page": "Page {n}", "id": "ID", "created": "Created", "updated": "Updated",
        "priority": "Priority", "attempts": "Attempts", "reason": "Reason",
        "cancel": "Cancel job", "logs": "Logs", "events": "Events", "exit_code": "Exit code",
        "started": "Started", "ended": "Ended", "lost_work": "Lost work (s)",
        "preemptions": "Preemptions and resumes", "submit_job": "Submit a local job",
        "command": "Command (sh -c)", "cards_per_node": "Cards per node", "submit": "Submit",
        "job_submitted": "Job submitted.", "no_logs": "(no output yet)",
        "following": "following…", "finished": "finished",
        "create_key": "Create key", "scope": "Scope", "prefix": "Prefix", "expires": "Expires",
        "revoked": "revoked", "revoke": "Revoke", "active": "active",
        "secret_once": "The new key is shown this once; copy it now:",
        "period": "Period", "item": "Item", "meter": "Meter", "quantity": "Quantity",
        "amount": "Amount", "download_csv": "Download bill CSV", "bill": "Bill", "tier": "Tier",
        "prompt_tokens": "Prompt tokens", "completion_tokens": "Completion tokens",
        "card_ms": "Card-ms", "entries": "Entries", "none": "none", "at": "At",
        "actor": "Actor", "action": "Action", "resource": "Resource", "outcome": "Outcome",
        "older": "Older", "newest": "Newest", "error": "Something went wrong",
        "not_found": "No such page or object (or it is not yours).",
        "forbidden": "Your key's scope does not allow this.", "back": "Back",
        "csrf_failed": "The form expired or came from elsewhere (CSRF check failed); reload "
                       "and try again.",
        "language": "中文", "utilisation": "Utilisation", "view": "View",
        "operator": "operator", "signed_in_as": "Signed in as", "borrowing": "Borrowing limit",
        "lending": "Lending limit", "chart_pflops": "FP16 PFLOPS by region",
        "bad_int": "enter a whole number from 0 to {max}",
        "bad_weight": "enter a number greater than 0",
        "queues": "Queues", "wan": "WAN links & transfers", "revenue": "Revenue",
        "deployments": "Deployments & models", "datasets": "Datasets",
        "knowledge": "Knowledge bases", "apps": "Apps",
    },
}
# fmt: on
PARTS: Final = (_CORE, messages_ops.MESSAGES, messages_tenant.MESSAGES, messages_apps.MESSAGES)
MESSAGES: Final[Mapping[str, Mapping[str, str]]] = {
    lang: {key: text for part in PARTS for key, text in part.get(lang, {}).items()}
    for lang in LANGS
}
"""Every page group's labels in one table per language (a key in two parts: the later wins;
a unit test checks the parts never share a key)."""


def pick_lang(query: str | None, cookie: str | None) -> str:
    """``?lang=`` wins, then the cookie, then zh."""
    for candidate in (query, cookie):
        if candidate in LANGS:
            assert candidate is not None
            return candidate
    return DEFAULT_LANG


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)`` in ``lang``: English, then the key, where a message is missing."""
    table = MESSAGES.get(lang, MESSAGES["en"])

    def t(key: str, **values: object) -> str:
        text = table.get(key) or MESSAGES["en"].get(key) or key
        return text.format(**values) if values else text

    return t
