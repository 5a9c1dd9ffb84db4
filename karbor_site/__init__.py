"""Karbor on Django: project package (settings, root urls, Celery app, API plumbing)."""
from .celery import app as celery_app

__all__ = ("celery_app",)
