from karbor_site.api.routers import KarborRouter
from restores.views import RestoreViewSet

router = KarborRouter()
router.register("restores", RestoreViewSet, basename="restore")

urlpatterns = router.urls
