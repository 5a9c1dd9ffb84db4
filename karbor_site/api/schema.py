"""drf-spectacular hooks: describe the API as Karbor clients call it."""
from __future__ import annotations


def strip_trailing_slashes(result: dict, generator, request, public) -> dict:
    """Show ``/v1/{project_id}/plans``, not ``…/plans/``.

    The routers accept both (``/?``); spectacular renders that optional slash as a required
    one, which is not the path python-karborclient sends.
    """
    result["paths"] = {
        (path.rstrip("/") or "/"): item for path, item in result.get("paths", {}).items()
    }
    return result
