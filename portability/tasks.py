"""The import as a background task: by id, thin; the work is in importing.py."""

import logging

from celery import shared_task

from . import importing
from .models import Import

log = logging.getLogger(__name__)


@shared_task(ignore_result=True, name="portability.tasks.run_import")
def run_import(import_id):
    job = Import.objects.select_related("newsletter", "created_by").filter(pk=import_id).first()
    if job is None or job.status == Import.Status.DONE:
        return  # deleted meanwhile, or a redelivered task of a finished import
    try:
        with job.file.open("rb") as stream:
            importing.run(job, stream)
    except importing.ImportFailed as error:
        log.info("import %s refused: %s", import_id, error)
