"""Dev outbox messages are filed under their newsletter by id.

Messages kept before this have no newsletter: only superusers see them (a slug may have
changed hands since, so it is not trusted to file them)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('newsletters', '0005_send_leases'),
    ]

    operations = [
        migrations.AddField(
            model_name='outboxmessage',
            name='newsletter',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='newsletters.newsletter'),
        ),
    ]
