"""Root URLs: the Karbor v1 API, the admin, the OpenAPI schema and Swagger UI."""
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from karbor_site.api.versions import versions

PROJECT = r"^v1/(?P<project_id>[^/]+)/"

urlpatterns = [
    path("", versions, name="versions"),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(PROJECT, include("providers.urls")),
    re_path(PROJECT, include("plans.urls")),
    re_path(PROJECT, include("triggers.urls")),
    re_path(PROJECT, include("protection.urls")),
    re_path(PROJECT, include("restores.urls")),
]

handler400 = "karbor_site.api.exceptions.json_400"
handler403 = "karbor_site.api.exceptions.json_403"
handler404 = "karbor_site.api.exceptions.json_404"
handler500 = "karbor_site.api.exceptions.json_500"
