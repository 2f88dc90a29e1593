"""Model tracking: row changes and bulk QuerySet operations on the models in ``SEALOG["TRACK"]``.

Row events come from pre_save/post_save/post_delete, with the changed fields only (the old
values are read in pre_save, so they are what the database held, not what was loaded).
Bulk operations send no per-row signals (or too many), so QuerySet.update, .delete,
.bulk_create and .bulk_update are wrapped: each emits one ``.bulk_*`` event for a tracked
model, and per-row events of that model are muted while it runs. Every event waits for
``transaction.on_commit``: a rolled-back change leaves none.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save, pre_save

from .._values import MAX_PKS, jsonable
from . import conf

_report = logging.getLogger("sealog")
_tracked: set[type[models.Model]] = set()
_bulk: contextvars.ContextVar[frozenset[type[models.Model]]] = contextvars.ContextVar(
    "sealog_django_bulk", default=frozenset())
_OLD = "_sealog_old"


def install(labels: Iterable[str]) -> None:
    """Track exactly these models from now on (``"app_label.ModelName"``)."""
    for model in list(_tracked):
        for signal in (pre_save, post_save, post_delete):
            signal.disconnect(sender=model, dispatch_uid=f"sealog.track.{model._meta.label}")
    _tracked.clear()
    for label in labels:
        model = apps.get_model(label)
        uid = f"sealog.track.{model._meta.label}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=uid)
        post_save.connect(_saved, sender=model, dispatch_uid=uid)
        post_delete.connect(_deleted, sender=model, dispatch_uid=uid)
        _tracked.add(model)
    _patch_queryset()


# -- emitting on commit --------------------------------------------------------------------


def emit_on_commit(using: str, **fields: Any) -> None:
    """Emit when the transaction commits, in the context current now (the request's)."""
    tenant = conf.constant_tenant()
    if tenant is not None:
        fields["tenant_id"] = tenant
    ctx = contextvars.copy_context()
    transaction.on_commit(lambda: _emit(ctx, fields), using=using)


def _emit(ctx: contextvars.Context, fields: dict[str, Any]) -> None:
    try:
        ctx.run(conf.get_log().emit, **fields)
    except Exception as exc:  # committed already: raising would only stop the next callbacks
        _report.error("audit event %s for %s was not recorded: %s: %s", fields["action"],
                      fields.get("target"), type(exc).__name__, exc)


# -- rows ----------------------------------------------------------------------------------


def _loaded(instance: models.Model) -> dict[str, Any]:
    """The concrete fields this instance holds (deferred ones are not fetched)."""
    held = instance.__dict__
    return {f.attname: held[f.attname] for f in instance._meta.concrete_fields if f.attname in held}


def _rendered(model: type[models.Model], values: dict[str, Any]) -> dict[str, Any]:
    """Values as JSON, as the database keeps them (a DecimalField's places), so before and after compare."""
    fields = {f.attname: f for f in model._meta.concrete_fields}
    out = {}
    for name, value in values.items():
        field = fields.get(name)
        places = field.decimal_places if isinstance(field, models.DecimalField) else None
        out[name] = jsonable(value.quantize(Decimal(1).scaleb(-places))
                             if isinstance(value, Decimal) and places is not None else value)
    return out


def _differs(old: Any, new: Any) -> bool:
    try:
        return bool(old != new)  # Decimal("6") == Decimal("6.00"); aware datetimes compare across zones
    except TypeError:
        return bool(jsonable(old) != jsonable(new))


def _before_save(sender: type[models.Model], instance: models.Model, raw: bool, using: str, **_: Any) -> None:
    if instance.pk is None or sender in _bulk.get():
        return
    names = list(_loaded(instance))
    instance.__dict__[_OLD] = sender._base_manager.using(using).filter(pk=instance.pk).values(*names).first()


def _saved(sender: type[models.Model], instance: models.Model, created: bool, using: str,
           update_fields: frozenset[str] | None = None, **_: Any) -> None:
    old = instance.__dict__.pop(_OLD, None)
    if sender in _bulk.get():
        return
    now = _loaded(instance)
    if update_fields is not None:
        fields = instance._meta.concrete_fields
        saved = {f.attname for f in fields if f.name in update_fields or f.attname in update_fields}
        now = {k: v for k, v in now.items() if k in saved}
    if created or old is None:
        verb, before, after = "create", None, _rendered(sender, now)
    else:
        changed = [k for k, v in now.items() if k in old and _differs(old[k], v)]
        if not changed:
            return  # saved without a change: nothing happened worth a record
        verb = "update"
        before = _rendered(sender, {k: old[k] for k in changed})
        after = _rendered(sender, {k: now[k] for k in changed})
    emit_on_commit(using, action=f"{sender._meta.label_lower}.{verb}", target=(sender._meta.label, str(instance.pk)),
                   before=before, after=after)


def _deleted(sender: type[models.Model], instance: models.Model, using: str, **_: Any) -> None:
    if sender in _bulk.get():
        return
    before = _rendered(sender, _loaded(instance))
    emit_on_commit(using, action=f"{sender._meta.label_lower}.delete", target=(sender._meta.label, str(instance.pk)),
                   before=before)


# -- bulk operations -----------------------------------------------------------------------


@contextmanager
def _muted(model: type[models.Model]) -> Iterator[None]:
    """Per-row events of this model are part of the bulk event while it runs."""
    token = _bulk.set(_bulk.get() | {model})
    try:
        yield
    finally:
        _bulk.reset(token)


def _bulk_event(model: type[models.Model], using: str, verb: str, count: int, pks: Iterable[Any],
                **extra: Any) -> None:
    metadata = {"count": count, "pks": [str(pk) for pk in pks if pk is not None][:MAX_PKS], **extra}
    emit_on_commit(using, action=f"{model._meta.label_lower}.{verb}", target=("model", model._meta.label),
                   metadata=metadata)


def _own(queryset: models.QuerySet[Any]) -> bool:
    """A bulk call on a tracked model that is not already inside one of ours."""
    model = queryset.model
    return model in _tracked and model not in _bulk.get()


def _sample_pks(queryset: models.QuerySet[Any]) -> list[Any]:
    return list(queryset.values_list("pk", flat=True)[:MAX_PKS])


_original: dict[str, Callable[..., Any]] = {}


def _update(self: models.QuerySet[Any], **kwargs: Any) -> int:
    if not _own(self):
        return _original["update"](self, **kwargs)  # type: ignore[no-any-return]
    with transaction.atomic(using=self.db, savepoint=False), _muted(self.model):
        pks = _sample_pks(self)
        count: int = _original["update"](self, **kwargs)
        _bulk_event(self.model, self.db, "bulk_update", count, pks, fields=sorted(kwargs))
    return count


def _delete(self: models.QuerySet[Any]) -> tuple[int, dict[str, int]]:
    if not _own(self):
        return _original["delete"](self)  # type: ignore[no-any-return]
    with transaction.atomic(using=self.db, savepoint=False), _muted(self.model):
        pks = _sample_pks(self)
        deleted, per_model = _original["delete"](self)
        _bulk_event(self.model, self.db, "bulk_delete", per_model.get(self.model._meta.label, 0), pks)
    return deleted, per_model


def _bulk_create(self: models.QuerySet[Any], objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
    if not _own(self):
        return _original["bulk_create"](self, objs, *args, **kwargs)  # type: ignore[no-any-return]
    with transaction.atomic(using=self.db, savepoint=False), _muted(self.model):
        created: list[Any] = _original["bulk_create"](self, objs, *args, **kwargs)
        _bulk_event(self.model, self.db, "bulk_create", len(created), (o.pk for o in created))
    return created


def _bulk_update(self: models.QuerySet[Any], objs: Iterable[Any], fields: Iterable[str], *args: Any,
                 **kwargs: Any) -> int:
    if not _own(self):
        return _original["bulk_update"](self, objs, fields, *args, **kwargs)  # type: ignore[no-any-return]
    objs, fields = list(objs), list(fields)
    with transaction.atomic(using=self.db, savepoint=False), _muted(self.model):
        count: int = _original["bulk_update"](self, objs, fields, *args, **kwargs)
        _bulk_event(self.model, self.db, "bulk_update", count, (o.pk for o in objs), fields=sorted(fields))
    return count


def _patch_queryset() -> None:
    """Wrap the four bulk methods once per process; untracked models pay one set lookup."""
    if _original:
        return
    for name, wrapper in (("update", _update), ("delete", _delete), ("bulk_create", _bulk_create),
                          ("bulk_update", _bulk_update)):
        original = getattr(models.QuerySet, name)
        _original[name] = original
        functools.update_wrapper(wrapper, original)  # keeps alters_data and queryset_only
        setattr(models.QuerySet, name, wrapper)
