"""The app that carries the corral_stats management command: INSTALLED_APPS += ["corral.django"]."""
from django.apps import AppConfig


class CorralConfig(AppConfig):
    name = "corral.django"
    label = "corral"
    verbose_name = "corral"
