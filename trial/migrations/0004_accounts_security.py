"""Issue 13: a trial may ask readers and experts for a second factor; invitations expire; API tokens of one trial,
stored hashed (they replace DRF's authtoken, whose plain, unscoped, never-expiring keys no longer authenticate)."""
import datetime

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def expire_open_invitations(apps, schema_editor):
    # Invitations sent before this migration get the default life from their creation (7 days).
    Invitation = apps.get_model("trial", "Invitation")
    for invitation in Invitation.objects.filter(expires_at__isnull=True):
        invitation.expires_at = invitation.created_at + datetime.timedelta(days=7)
        invitation.save(update_fields=["expires_at"])


class Migration(migrations.Migration):

    dependencies = [
        ("trial", "0003_case_display_windows_case_values_image"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="trial",
            name="second_factor_for_all",
            field=models.BooleanField(
                default=False,
                help_text="Investigators, statisticians and seniors always log in with a second factor (an "
                          "authenticator app); with this, readers and experts of this trial do as well.",
                verbose_name="Second factor for readers and experts too"),
        ),
        migrations.AddField(
            model_name="invitation",
            name="expires_at",
            field=models.DateTimeField(null=True,
                                       help_text="After this the link no longer works (CXR_INVITATION_DAYS)."),
        ),
        migrations.RunPython(expire_open_invitations, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="invitation",
            name="expires_at",
            field=models.DateTimeField(help_text="After this the link no longer works (CXR_INVITATION_DAYS)."),
        ),
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(blank=True, help_text="What the token is for, e.g. “PACS bridge”.",
                                          max_length=60)),
                ("prefix", models.CharField(help_text="The key's first characters, to tell tokens apart.",
                                            max_length=16)),
                ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("expires_at", models.DateTimeField()),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                                 related_name="+", to=settings.AUTH_USER_MODEL)),
                ("trial", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="api_tokens",
                                            to="trial.trial")),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="api_tokens",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["-created_at"]},
        ),
    ]
