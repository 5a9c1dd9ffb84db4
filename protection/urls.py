from django.urls import re_path

from karbor_site.api.routers import KarborRouter
from protection import views
from protection.verifications.views import VerificationViewSet

router = KarborRouter()
router.register("operation_logs", views.OperationLogViewSet, basename="operation-log")
router.register("os-services", views.ServiceViewSet, basename="os-service")
router.register("quotas", views.QuotaViewSet, basename="quota")
router.register("quota_classes", views.QuotaClassViewSet, basename="quota-class")
router.register("verifications", VerificationViewSet, basename="verification")

PROVIDER = r"providers/(?P<provider_id>[^/]+)"
CHECKPOINT = r"(?P<checkpoint_id>[^/]+)"

urlpatterns = router.urls + [
    re_path(
        rf"^{PROVIDER}/checkpoints/?$",
        views.CheckpointViewSet.as_view({"get": "list", "post": "create"}),
        name="checkpoint-list",
    ),
    re_path(
        rf"^{PROVIDER}/checkpoints/action/?$",
        views.CheckpointViewSet.as_view({"post": "copy"}),
        name="checkpoint-action",
    ),
    re_path(
        rf"^{PROVIDER}/checkpoints/{CHECKPOINT}/?$",
        views.CheckpointViewSet.as_view({"get": "retrieve", "delete": "destroy", "put": "update"}),
        name="checkpoint-detail",
    ),
]
