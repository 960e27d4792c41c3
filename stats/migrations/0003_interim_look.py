# Interim looks (issue 14 item 8): one immutable record per look.

import django.db.models.deletion
import stats.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('stats', '0002_run_surrogate_id_key'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='InterimLook',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField(help_text='1, 2, … within the trial, every kind together.')),
                ('kind', models.CharField(choices=[('blinded_ssr', 'Blinded sample-size re-estimation'), ('safety', 'Safety (missed critical findings)'), ('efficacy', 'Efficacy (primary against the spending boundary)')], max_length=12)),
                ('sequence', models.PositiveIntegerField(help_text='1, 2, … within the trial and kind (the 2nd safety look).')),
                ('plan_version', models.PositiveIntegerField()),
                ('plan_sha256', models.CharField(max_length=64)),
                ('planned_fraction', models.FloatField(blank=True, help_text="The plan's information fraction for this look (empty: unplanned).", null=True)),
                ('information_fraction', models.FloatField(help_text='Cases whose scoring is complete / planned cases.')),
                ('cases_complete', models.PositiveIntegerField()),
                ('planned_cases', models.PositiveIntegerField()),
                ('trial_status', models.CharField(help_text="The trial's status when the look was taken.", max_length=12)),
                ('dataset', models.FileField(max_length=300, upload_to=stats.models.look_path)),
                ('dataset_sha256', models.CharField(max_length=64)),
                ('results', models.JSONField()),
                ('code_version', models.JSONField(blank=True, default=dict)),
                ('performed_at', models.DateTimeField()),
                ('seconds', models.FloatField()),
                ('performed_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('plan', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='interim_looks', to='stats.analysisplan')),
                ('trial', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='interim_looks', to='trial.trial')),
            ],
            options={
                'ordering': ['trial', 'number'],
                'constraints': [models.UniqueConstraint(fields=('trial', 'number'), name='interim_look_number_unique'), models.UniqueConstraint(fields=('trial', 'kind', 'sequence'), name='interim_look_sequence_unique'), models.CheckConstraint(condition=models.Q(('kind__in', ['blinded_ssr', 'safety', 'efficacy'])), name='interim_look_kind_valid'), models.CheckConstraint(condition=models.Q(('dataset_sha256__regex', '^[0-9a-f]{64}$')), name='interim_look_has_dataset_hash'), models.CheckConstraint(condition=models.Q(('information_fraction__gte', 0)), name='interim_look_fraction_range')],
            },
        ),
    ]
