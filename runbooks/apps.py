from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RunbooksConfig(AppConfig):
    name = "runbooks"
    verbose_name = "Incidents and runbooks"

    def ready(self) -> None:
        from runbooks import evidence, rooms, subscribers
        from runbooks.services import runbooks_seed

        post_migrate.connect(runbooks_seed, sender=self)
        subscribers.register()
        evidence.register()
        rooms.register()
