"""Verifications: re-read every chunk of a checkpoint and check it (the ``verifications`` table).

* ``services`` — request one (validated synchronously), the admin action;
* ``flows`` — the verify kind of the runner (``operations``);
* ``views`` / ``serializers`` — the API (Karbor §2.10).
"""
