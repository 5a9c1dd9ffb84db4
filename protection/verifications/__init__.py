"""Verifications: re-read every chunk of a checkpoint and check it (the ``verifications`` table).

* ``services`` — request one (validated synchronously), the admin action;
* ``flows`` — the verify kind of the runner (``operations``);
* ``views`` / ``serializers`` — the API (Karbor §2.10).
"""

# The names the old ``protection/verifications.py`` module offered (other branches import them).
from protection.verifications.flows import verification_run  # noqa: E402
from protection.verifications.services import verification_admin_action, verification_create  # noqa: E402

__all__ = ["verification_admin_action", "verification_create", "verification_run"]
