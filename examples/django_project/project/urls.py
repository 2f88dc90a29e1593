from django.contrib import admin
from django.urls import include, path
from notes import views

urlpatterns = [
    path("admin/audit/", include("sealog.integrations.django.urls")),  # before the admin's own URLs
    path("admin/", admin.site.urls),
    path("notes/", views.notes),
    path("notes/archive/", views.archive),
]
