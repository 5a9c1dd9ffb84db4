from karbor_site.api.routers import KarborRouter
from triggers.views import ScheduledOperationViewSet, TriggerViewSet

router = KarborRouter()
router.register("triggers", TriggerViewSet, basename="trigger")
router.register("scheduled_operations", ScheduledOperationViewSet, basename="scheduled-operation")

urlpatterns = router.urls
