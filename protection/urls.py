from karbor_site.api.routers import KarborRouter
from protection import views

router = KarborRouter()
router.register("operation_logs", views.OperationLogViewSet, basename="operation-log")
router.register("os-services", views.ServiceViewSet, basename="os-service")
router.register("quotas", views.QuotaViewSet, basename="quota")
router.register("quota_classes", views.QuotaClassViewSet, basename="quota-class")

urlpatterns = router.urls
