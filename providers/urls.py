from karbor_site.api.routers import KarborRouter

router = KarborRouter()

urlpatterns = router.urls
