"""The delivery app takes over the ledger, its leases, the renditions and the dev outbox from the
newsletters app: their tables keep their names, so nothing moves in the database. Their content
types move with them (permissions and admin history follow).
"""

import django.db.models.deletion
from django.db import migrations, models


MODELS = ["delivery", "deliveryclaim", "rendition", "outboxmessage"]


def move_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="newsletters", model__in=MODELS).update(app_label="delivery")


def move_content_types_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="delivery", model__in=MODELS).update(app_label="newsletters")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('newsletters', '0008_delivery_models_move_out'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('subscribers', '0006_owed_email_message_id'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='DeliveryClaim',
                fields=[
                    ('token', models.UUIDField(primary_key=True, serialize=False)),
                    ('issue_id', models.BigIntegerField(db_index=True)),
                    ('worker', models.CharField(blank=True, max_length=200)),
                    ('lease_until', models.DateTimeField()),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                ],
                options={
                    'db_table': 'newsletters_deliveryclaim',
                },
            ),
            migrations.CreateModel(
                name='OutboxMessage',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('mailer', models.CharField(blank=True, max_length=40)),
                    ('newsletter_slug', models.SlugField(blank=True, help_text='From the X-Newsletter header.', max_length=60)),
                    ('from_email', models.CharField(max_length=300)),
                    ('to', models.TextField(help_text='Recipients, one per line.')),
                    ('subject', models.CharField(max_length=998)),
                    ('text_body', models.TextField(blank=True)),
                    ('html_body', models.TextField(blank=True)),
                    ('raw', models.BinaryField(help_text='The whole message as it would go on the wire.')),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('newsletter', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='newsletters.newsletter')),
                ],
                options={
                    'verbose_name': 'dev outbox message',
                    'db_table': 'newsletters_outboxmessage',
                    'ordering': ['-id'],
                },
            ),
            migrations.CreateModel(
                name='Delivery',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('variant', models.CharField(default='free', help_text='Which rendition: free or paid.', max_length=8)),
                    ('status', models.CharField(choices=[('pending', 'Pending'), ('claimed', 'Claimed by a worker'), ('sending', 'Handed to the transport'), ('sent', 'Sent'), ('failed', 'Failed'), ('unknown', 'Unknown (worker lost mid-send)'), ('skipped', 'Skipped (left the list before their turn)')], default='pending', max_length=16)),
                    ('attempts', models.PositiveSmallIntegerField(default=0)),
                    ('claim_token', models.UUIDField(blank=True, null=True)),
                    ('claimed_by', models.CharField(blank=True, max_length=200)),
                    ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                    ('message_id', models.CharField(blank=True, max_length=300)),
                    ('error', models.TextField(blank=True)),
                    ('sent_at', models.DateTimeField(blank=True, null=True)),
                    ('retry_until', models.DateTimeField(blank=True, null=True)),
                    ('issue', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='newsletters.issue')),
                    ('subscriber', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='subscribers.subscriber')),
                ],
                options={
                    'verbose_name_plural': 'deliveries',
                    'db_table': 'newsletters_delivery',
                    'indexes': [models.Index(fields=['issue', 'status', 'id'], name='delivery_issue_status_idx')],
                    'constraints': [models.UniqueConstraint(fields=('issue', 'subscriber'), name='delivery_unique_pair'), models.CheckConstraint(condition=models.Q(('status__in', ['pending', 'claimed', 'sending', 'sent', 'failed', 'unknown', 'skipped'])), name='delivery_status_valid')],
                },
            ),
            migrations.CreateModel(
                name='Rendition',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('variant', models.CharField(max_length=8)),
                    ('headers', models.TextField(help_text='Header lines shared by every recipient.')),
                    ('text', models.TextField()),
                    ('html', models.TextField()),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('issue', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='renditions', to='newsletters.issue')),
                ],
                options={
                    'db_table': 'newsletters_rendition',
                    'constraints': [models.UniqueConstraint(fields=('issue', 'variant'), name='rendition_unique_variant')],
                },
            ),
    ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
