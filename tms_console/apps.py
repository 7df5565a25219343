from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TmsConsoleConfig(AppConfig):
    name = "tms_console"
    verbose_name = "TMS console"

    def ready(self) -> None:
        from tms_console import checks, simtasks
        from tms_console.health import DependencyCollector
        from tms_console.metrics import scrape_collector_register
        from tms_console.roles import roles_sync
        from tms_console.simclock import install_from_env

        post_migrate.connect(roles_sync, sender=self)
        checks.register()
        scrape_collector_register(DependencyCollector())
        if install_from_env():  # a simulation run's shared clock, when TMS_SIM_CLOCK_FILE names one
            simtasks.install_from_env()  # and its task ledger, when the run has a worker of its own
