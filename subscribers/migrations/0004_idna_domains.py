"""Addresses stored before domains were kept in their IDNA form get that spelling now.

A subscriber whose IDNA spelling is already taken by another row keeps its old spelling (the
send converts the domain anyway); a suppression whose IDNA spelling is already suppressed is a
duplicate and goes.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from subscribers.addresses import normalize_email

    Subscriber = apps.get_model("subscribers", "Subscriber")
    Suppression = apps.get_model("subscribers", "Suppression")
    for model, duplicates_go in ((Subscriber, False), (Suppression, True)):
        for row in model.objects.filter(email__regex=r"[^\x01-\x7f]").only("id", "email").iterator():
            spelled = normalize_email(row.email)
            if spelled == row.email:
                continue
            if model.objects.filter(email__iexact=spelled).exclude(pk=row.pk).exists():
                if duplicates_go:
                    model.objects.filter(pk=row.pk).delete()
                continue
            model.objects.filter(pk=row.pk).update(email=spelled)


class Migration(migrations.Migration):
    dependencies = [("subscribers", "0003_suppression")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
