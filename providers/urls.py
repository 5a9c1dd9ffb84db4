from django.urls import re_path

from karbor_site.api.routers import KarborRouter
from providers.views import ProtectableViewSet, ProviderViewSet

router = KarborRouter()
router.register("providers", ProviderViewSet, basename="provider")

# Type names such as OS::Nova::Server contain colons and are sent unescaped; [^/]+ takes them.
TYPE = r"(?P<protectable_type>[^/]+)"
urlpatterns = router.urls + [
    re_path(r"^protectables/?$", ProtectableViewSet.as_view({"get": "list"}), name="protectable-list"),
    re_path(rf"^protectables/{TYPE}/?$", ProtectableViewSet.as_view({"get": "retrieve"}), name="protectable-detail"),
    re_path(
        rf"^protectables/{TYPE}/instances/?$",
        ProtectableViewSet.as_view({"get": "instances"}),
        name="protectable-instances",
    ),
    re_path(
        rf"^protectables/{TYPE}/instances/(?P<instance_id>[^/]+)/?$",
        ProtectableViewSet.as_view({"get": "instance"}),
        name="protectable-instance",
    ),
]
