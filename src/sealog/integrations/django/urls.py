"""Include before the admin's own URLs: ``path("admin/audit/", include("sealog.integrations.django.urls"))``."""

from django.urls import path

from . import views

app_name = "sealog"
urlpatterns = [path("", views.events, name="events")]
