"""Django app: add ``"sealog.integrations.django"`` to INSTALLED_APPS and the middleware to MIDDLEWARE.

Settings: ``SEALOG = {"URL": ..., "TENANT": ..., "TRACK": [...], "TRUSTED_PROXIES": [...], **AuditLog options}``.
``get_log()`` is the AuditLog those settings make; the first use also makes it sealog's default,
so ``sealog.emit(...)`` in views writes to the same store.
"""

from .conf import get_log
from .middleware import AuditMiddleware

__all__ = ["AuditMiddleware", "get_log"]
