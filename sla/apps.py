from django.apps import AppConfig


class SlaConfig(AppConfig):
    name = "sla"
    verbose_name = "Contracts and SLAs"

    def ready(self) -> None:
        from sla import evidence, metrics, runbook_actions, subscribers, terms

        terms.register()
        metrics.register()
        evidence.register()
        runbook_actions.register()
        subscribers.register()
