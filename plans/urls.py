from karbor_site.api.routers import KarborRouter
from plans.views import PlanViewSet

router = KarborRouter()
router.register("plans", PlanViewSet, basename="plan")

urlpatterns = router.urls
