"""Delivery, DeliveryClaim, Rendition and OutboxMessage now belong to the delivery app.

State only: their tables stay as they are (delivery/migrations/0001_initial.py takes them over).
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('newsletters', '0007_header_safe_fields'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.RemoveIndex(
                model_name='delivery',
                name='delivery_issue_status_idx',
            ),
            migrations.RemoveConstraint(
                model_name='delivery',
                name='delivery_unique_pair',
            ),
            migrations.RemoveConstraint(
                model_name='delivery',
                name='delivery_status_valid',
            ),
            migrations.DeleteModel(
                name='DeliveryClaim',
            ),
            migrations.RemoveField(
                model_name='outboxmessage',
                name='newsletter',
            ),
            migrations.RemoveConstraint(
                model_name='rendition',
                name='rendition_unique_variant',
            ),
            migrations.RemoveField(
                model_name='delivery',
                name='issue',
            ),
            migrations.RemoveField(
                model_name='delivery',
                name='subscriber',
            ),
            migrations.DeleteModel(
                name='OutboxMessage',
            ),
            migrations.RemoveField(
                model_name='rendition',
                name='issue',
            ),
            migrations.DeleteModel(
                name='Delivery',
            ),
            migrations.DeleteModel(
                name='Rendition',
            ),
    ],
            database_operations=[],
        ),
    ]
