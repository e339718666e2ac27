"""The authorization table: every route and the narrowest scope allowed to call it.

Kept as data so it can be reviewed at a glance and tested: the app refuses to start if a
route has no entry, and ``tests/integration/test_isolation.py`` walks every route. Object
ownership (tenant A's job is 404 to tenant B) is checked in the services.
"""

from __future__ import annotations

from typing import Final, Literal

from suanwang.domain.tenancy import Scope

PUBLIC: Final = "public"
Rule = Scope | Literal["public"]

ROUTES: Final[dict[tuple[str, str], Rule]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/api/v1/whoami"): Scope.READ_ONLY,
    # fleet: shared infrastructure; everyone may look, only the operator may change it
    ("GET", "/api/v1/fleet"): Scope.READ_ONLY,
    ("GET", "/api/v1/fleet/totals"): Scope.READ_ONLY,
    ("GET", "/api/v1/fleet/nodes"): Scope.READ_ONLY,
    ("GET", "/api/v1/clusters"): Scope.READ_ONLY,
    ("GET", "/api/v1/chips"): Scope.READ_ONLY,
    ("GET", "/api/v1/priority-classes"): Scope.READ_ONLY,
    ("POST", "/api/v1/fleet/apply"): Scope.OPERATOR,
    ("POST", "/api/v1/demo/load"): Scope.OPERATOR,
    # the operator's views of the platform (services/oversight.py): every tenant's numbers
    ("GET", "/api/v1/fleet/utilisation"): Scope.OPERATOR,
    ("GET", "/api/v1/queues"): Scope.OPERATOR,
    ("GET", "/api/v1/wan"): Scope.OPERATOR,
    ("GET", "/api/v1/revenue"): Scope.OPERATOR,
    # tenants: the operator manages them; a tenant may read itself
    ("POST", "/api/v1/tenants"): Scope.OPERATOR,
    ("GET", "/api/v1/tenants"): Scope.READ_ONLY,
    ("GET", "/api/v1/tenants/{name}"): Scope.READ_ONLY,
    ("PUT", "/api/v1/tenants/{name}/quota"): Scope.OPERATOR,
    # keys: tenant admins manage their own tenant's keys
    ("POST", "/api/v1/keys"): Scope.TENANT_ADMIN,
    ("GET", "/api/v1/keys"): Scope.TENANT_ADMIN,
    ("DELETE", "/api/v1/keys/{key_id}"): Scope.TENANT_ADMIN,
    # gateway limits: the operator sets a tenant's, a tenant admin its own keys'
    ("GET", "/api/v1/tenants/{name}/limits"): Scope.READ_ONLY,
    ("PUT", "/api/v1/tenants/{name}/limits"): Scope.OPERATOR,
    ("GET", "/api/v1/keys/{key_id}/limits"): Scope.TENANT_ADMIN,
    ("PUT", "/api/v1/keys/{key_id}/limits"): Scope.TENANT_ADMIN,
    # jobs
    ("POST", "/api/v1/jobs"): Scope.TENANT_MEMBER,
    ("GET", "/api/v1/jobs"): Scope.READ_ONLY,
    ("GET", "/api/v1/jobs/{job_id}"): Scope.READ_ONLY,
    ("GET", "/api/v1/jobs/{job_id}/logs"): Scope.READ_ONLY,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): Scope.TENANT_MEMBER,
    # models as a service: the catalogue is public to keys; the operator deploys public
    # models, a tenant admin private ones in its own tenant (ownership checked in services)
    ("GET", "/api/v1/models"): Scope.READ_ONLY,
    ("GET", "/api/v1/models/{name}"): Scope.READ_ONLY,
    ("POST", "/api/v1/deployments"): Scope.TENANT_ADMIN,
    ("GET", "/api/v1/deployments"): Scope.READ_ONLY,
    ("GET", "/api/v1/deployments/{deployment_id}"): Scope.READ_ONLY,
    ("PUT", "/api/v1/deployments/{deployment_id}/replicas"): Scope.TENANT_ADMIN,
    ("PUT", "/api/v1/deployments/{deployment_id}/autoscale"): Scope.TENANT_ADMIN,
    ("DELETE", "/api/v1/deployments/{deployment_id}/autoscale"): Scope.TENANT_ADMIN,
    ("DELETE", "/api/v1/deployments/{deployment_id}"): Scope.TENANT_ADMIN,
    # external OpenAI-compatible endpoints: only the operator names URLs the platform calls
    ("POST", "/api/v1/external-endpoints"): Scope.OPERATOR,
    ("GET", "/api/v1/external-endpoints"): Scope.OPERATOR,
    ("GET", "/api/v1/external-endpoints/{deployment_id}"): Scope.OPERATOR,
    ("PATCH", "/api/v1/external-endpoints/{deployment_id}"): Scope.OPERATOR,
    ("DELETE", "/api/v1/external-endpoints/{deployment_id}"): Scope.OPERATOR,
    # metering and bills: a tenant reads its own (checked in services), the operator any
    ("GET", "/api/v1/usage"): Scope.READ_ONLY,
    ("GET", "/api/v1/tenants/{name}/usage"): Scope.READ_ONLY,
    ("GET", "/api/v1/tenants/{name}/bills/{period}"): Scope.READ_ONLY,
    ("GET", "/api/v1/tenants/{name}/usage/daily"): Scope.READ_ONLY,
    ("GET", "/api/v1/tenants/{name}/quota-use"): Scope.READ_ONLY,
    ("PUT", "/api/v1/tenants/{name}/tier"): Scope.OPERATOR,
    # datasets: members create, upload, seal and delete their tenant's; ownership in services
    ("POST", "/api/v1/datasets"): Scope.TENANT_MEMBER,
    ("GET", "/api/v1/datasets"): Scope.READ_ONLY,
    ("GET", "/api/v1/datasets/{dataset}"): Scope.READ_ONLY,
    ("PUT", "/api/v1/datasets/{dataset}/files"): Scope.TENANT_MEMBER,
    ("POST", "/api/v1/datasets/{dataset}/seal"): Scope.TENANT_MEMBER,
    ("DELETE", "/api/v1/datasets/{dataset}"): Scope.TENANT_MEMBER,
    ("POST", "/api/v1/datasets/{dataset}/copy"): Scope.TENANT_MEMBER,
    ("GET", "/api/v1/datasets/{dataset}/transfers"): Scope.READ_ONLY,
    ("GET", "/api/v1/transfers/{transfer_id}"): Scope.READ_ONLY,
    # transfer agents: only the operator registers them and holds their certificates
    ("POST", "/api/v1/agents"): Scope.OPERATOR,
    ("GET", "/api/v1/agents"): Scope.OPERATOR,
    ("POST", "/api/v1/agents/{name}/rotate"): Scope.OPERATOR,
    # an agent renews its own certificate: no key, the request is signed by its current one
    ("POST", "/api/v1/agents/{name}/renew"): PUBLIC,
    ("GET", "/api/v1/tenants/{name}/storage"): Scope.READ_ONLY,
    ("PUT", "/api/v1/tenants/{name}/storage"): Scope.OPERATOR,
    # the audit log: the operator reads all, a tenant admin its own tenant's (services)
    ("GET", "/api/v1/audit"): Scope.TENANT_ADMIN,
    # knowledge bases: a tenant's own (ownership in services; others' are 404)
    ("POST", "/api/v1/knowledge-bases"): Scope.TENANT_ADMIN,
    ("GET", "/api/v1/knowledge-bases"): Scope.READ_ONLY,
    ("GET", "/api/v1/knowledge-bases/{kb_id}"): Scope.READ_ONLY,
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}"): Scope.TENANT_ADMIN,
    ("POST", "/api/v1/knowledge-bases/{kb_id}/documents"): Scope.TENANT_MEMBER,
    ("GET", "/api/v1/knowledge-bases/{kb_id}/documents"): Scope.READ_ONLY,
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}/documents/{doc_id}"): Scope.TENANT_MEMBER,
    ("POST", "/api/v1/knowledge-bases/{kb_id}/retrieve"): Scope.READ_ONLY,
    # apps: a tenant's own (ownership in services; others' are 404); admins change them
    ("POST", "/api/v1/apps"): Scope.TENANT_ADMIN,
    ("GET", "/api/v1/apps"): Scope.READ_ONLY,
    ("GET", "/api/v1/apps/{name}"): Scope.READ_ONLY,
    ("PATCH", "/api/v1/apps/{name}"): Scope.TENANT_ADMIN,
    ("DELETE", "/api/v1/apps/{name}"): Scope.TENANT_ADMIN,
    ("GET", "/api/v1/apps/{name}/versions"): Scope.READ_ONLY,
    ("POST", "/api/v1/apps/{name}/publish"): Scope.TENANT_ADMIN,
    ("PUT", "/api/v1/apps/{name}/sharing"): Scope.TENANT_ADMIN,
}

DOC_ROUTES: Final = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def rule_for(method: str, path: str) -> Rule | None:
    """The rule for a route template, or None when the table has no entry."""
    return ROUTES.get((method.upper(), path))
