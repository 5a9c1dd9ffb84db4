"""Routers for Karbor paths, which answer with and without the trailing slash."""
from rest_framework.routers import SimpleRouter


class KarborRouter(SimpleRouter):
    def __init__(self) -> None:
        super().__init__(trailing_slash=True)
        # Both `/plans` and `/plans/` resolve; Karbor clients use the former, browsers the latter.
        self.trailing_slash = "/?"
