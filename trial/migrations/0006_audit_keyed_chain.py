"""The keyed audit chain: a hash scheme per event (the events written before stay "sha256" and still verify; new
ones are "hmac-sha256", trial.audit), the state hash of the record each event wrote, and the last verification on
the head row. Adding columns fires no row trigger, so the append-only trigger of 0002 stays in place throughout."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("trial", "0005_fixed_block_reason")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="scheme",
            field=models.CharField(default="sha256", max_length=16),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="state_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="audithead",
            name="verified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="audithead",
            name="verified_intact",
            field=models.BooleanField(null=True),
        ),
        migrations.AddField(
            model_name="audithead",
            name="verified_summary",
            field=models.TextField(blank=True),
        ),
    ]
