from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "karbor_site.tenancy"
    label = "tenancy"
    verbose_name = "Projects and access"
    default_auto_field = "django.db.models.BigAutoField"
