"""Labels of the console's apps and the chat playground (app_pages.py, chat_pages.py):
zh-CN and English (same keys in both; every key starts with ``app_``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# fmt: off
MESSAGES: Final[Mapping[str, Mapping[str, str]]] = {
    "zh": {
        "app_call_as": "调用名", "app_model": "模型", "app_published": "已发布版本",
        "app_latest": "最新版本", "app_sharing": "可调用的密钥",
        "app_shared_all": "本租户所有密钥", "app_shared_you": "指定密钥（含你的）",
        "app_shared_not_you": "指定密钥（不含你的）",
        "app_from_template": "从行业模板创建应用", "app_template": "模板",
        "app_template_hint": "会新建知识库“名称-kb”并放入模板自带的资料，按关键词检索"
                             "（控制台不持有 API 密钥，无法做向量嵌入；要向量检索请用 CLI："
                             "suanwang apps create --from-template）。",
        "app_choose": "请选择", "app_create": "创建", "app_created": "应用已创建并发布。",
        "app_versions": "版本", "app_version": "版本", "app_publish": "发布",
        "app_is_published": "当前发布", "app_system_prompt": "系统提示词",
        "app_kbs": "知识库", "app_params": "参数", "app_share_save": "保存共享设置",
        "app_share_hint": "不勾选任何密钥 = 本租户所有密钥都可调用。",
        "app_delete": "删除应用", "app_delete_kbs": "同时删除只被此应用使用的知识库",
        "app_chat": "对话试用", "app_message": "消息", "app_send": "发送",
        "app_answer": "回答", "app_citations": "引用的片段", "app_document": "文档",
        "app_score": "得分", "app_no_citations": "（没有引用的片段）",
        "app_failed": "调用失败", "app_tokens": "计费 tokens：输入 {p}，输出 {c}",
        "app_description": "说明", "app_none": "还没有应用。", "app_note": "备注",
        "app_key": "密钥", "app_chat_hint": "与网关上 model=\"app:{name}\" 的调用走同一流程，"
                                            "按你的密钥计量计费。",
    },
    "en": {
        "app_call_as": "Call as", "app_model": "Model", "app_published": "Published version",
        "app_latest": "Latest version", "app_sharing": "Keys that may call it",
        "app_shared_all": "every key of the tenant",
        "app_shared_you": "named keys (yours included)",
        "app_shared_not_you": "named keys (not yours)",
        "app_from_template": "Create an app from an industry template", "app_template": "Template",
        "app_template_hint": "Makes the knowledge base \"NAME-kb\" of the template's starter "
                             "documents, searched by keyword (the console holds no API key to "
                             "embed with; for vector search use the CLI: suanwang apps create "
                             "--from-template).",
        "app_choose": "choose…", "app_create": "Create",
        "app_created": "App created and published.", "app_versions": "Versions",
        "app_version": "Version", "app_publish": "Publish", "app_is_published": "published",
        "app_system_prompt": "System prompt", "app_kbs": "Knowledge bases",
        "app_params": "Parameters", "app_share_save": "Save sharing",
        "app_share_hint": "No key ticked = every key of the tenant may call it.",
        "app_delete": "Delete app",
        "app_delete_kbs": "also delete the knowledge bases only this app uses",
        "app_chat": "Chat playground", "app_message": "Message", "app_send": "Send",
        "app_answer": "Answer", "app_citations": "Cited chunks", "app_document": "Document",
        "app_score": "Score", "app_no_citations": "(no chunks cited)",
        "app_failed": "The call failed", "app_tokens": "Billed tokens: {p} prompt, {c} completion",
        "app_description": "Description", "app_none": "No apps yet.", "app_note": "Note",
        "app_key": "Key", "app_chat_hint": "The same path as model=\"app:{name}\" on the "
                                            "gateway, metered and billed to your key.",
    },
}
# fmt: on
