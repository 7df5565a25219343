from django.apps import AppConfig


class MissionsConfig(AppConfig):
    name = "missions"
    verbose_name = "Carriers, shipments and missions"

    def ready(self) -> None:
        # The capabilities built on the core declare their checks and subscriptions here;
        # runbooks and sla declare theirs in their own AppConfig.ready.
        from missions import flags
        from missions.bus.metrics import BusCollector
        from missions.edi import channel as edi_channel
        from missions.events import event_broadcast, layer_is_shared, security_event_audit
        from missions.evidence import checks
        from missions.evidence import subscribers as evidence_subscribers
        from missions.onboarding import tasks as onboarding_tasks  # noqa: F401  (registers the beat task)
        from missions.ota import subscribers as ota_subscribers
        from missions.partner.api import backfill
        from missions.subscriptions import ALL_ACTIONS, event_subscribe
        from missions.telemetry.dead_letters import DeadLetterCollector
        from missions.tendering import subscribers as tendering_subscribers
        from tms_console.auth_guard import security_recorder_register
        from tms_console.metrics import scrape_collector_register

        checks.register()
        flags.provider_install()  # OpenFeature: the carrier flags come from the console's table
        scrape_collector_register(DeadLetterCollector())
        scrape_collector_register(BusCollector())
        event_subscribe(
            name="missions.live_broadcast",
            actions={ALL_ACTIONS},
            handler=event_broadcast,
            via="inline",
            when=layer_is_shared,
            retry=False,  # a late live update is worth nothing: the page catches up from the table
        )
        security_recorder_register(security_event_audit)
        evidence_subscribers.register()
        tendering_subscribers.register()
        ota_subscribers.register()
        edi_channel.register()
        backfill.register()  # before any request: the servers read the path's body limit from it
