from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Shared infrastructure"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from . import otp

        # As django.contrib.auth connects update_last_login: each new session decides its need for a second factor.
        user_logged_in.connect(otp.on_login, dispatch_uid="core.otp.on_login")
