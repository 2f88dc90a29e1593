"""A read-only admin page of the tenant's audit events, newest first."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from sealog import InvalidQuery

from . import conf

PAGE_SIZE = 50
FILTERS = ("action", "actor_id", "target_id", "outcome", "request_id")


@staff_member_required
def events(request: HttpRequest) -> HttpResponse:
    """Staff see their tenant's events; superusers may pick any tenant with ``?tenant=``."""
    tenant = conf.tenant_for(request)
    if getattr(request.user, "is_superuser", False):
        tenant = request.GET.get("tenant") or tenant
    filters = {name: request.GET[name] for name in FILTERS if request.GET.get(name)}
    context = {**admin.site.each_context(request), "title": "Audit events", "tenant": tenant,
               "filters": filters, "events": [], "next": None, "error": None}
    if tenant is None:
        context["error"] = "No tenant: set SEALOG['TENANT'], or pass ?tenant= as a superuser."
    else:
        try:
            page = conf.get_log().query(tenant, limit=PAGE_SIZE, after=request.GET.get("after") or None, **filters)
        except InvalidQuery as exc:
            context["error"] = str(exc)
        else:
            context["events"], context["next"] = page.events, page.next
    return TemplateResponse(request, "sealog/events.html", context)
