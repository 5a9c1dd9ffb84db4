"""The Celery application shared by the worker, beat and the API (which only enqueues)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "karbor_site.settings")

app = Celery("karbor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
