from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console: accounts, regions, audit log"

    def ready(self):
        """A login lockout is written to the audit log (rule A3), like every refusal."""
        # imported here, not at the top: the app registry is ready only now
        from axes.signals import user_locked_out

        from .services import audit_lockout

        user_locked_out.connect(audit_lockout, dispatch_uid="console-audit-lockout")
