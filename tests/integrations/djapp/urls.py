from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/audit/", include("sealog.integrations.django.urls")),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view()),
    path("logout/", auth_views.LogoutView.as_view()),
    path("whoami/", views.whoami),
    path("whoami-async/", views.whoami_async),
    path("books/<int:pk>/reprice/", views.reprice),
    path("authors/", views.add_author),
    path("stream/", views.stream),
]
