"""Export in one click: the newsletter's zip (exporting.py) as a download, for its owners only."""

import tempfile

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from newsletters.models import Newsletter
from ownedaudience.scoping import visible

from .exporting import export_newsletter


def export_download(request, newsletter_id):
    """The zip of a newsletter the user may see (404 for any other, as in the admin); written to a
    temporary file that disappears when the response is closed, so memory stays flat."""
    if not (request.user.is_active and request.user.is_staff):
        raise Http404
    newsletter = get_object_or_404(visible(request, Newsletter.objects.all()), pk=newsletter_id)
    file = tempfile.TemporaryFile(suffix=".zip")  # noqa: SIM115 (the response closes it)
    try:
        export_newsletter(newsletter, file)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return FileResponse(
        file, as_attachment=True, filename=f"{newsletter.slug}-{timezone.now():%Y-%m-%d}.zip",
        content_type="application/zip",
    )
