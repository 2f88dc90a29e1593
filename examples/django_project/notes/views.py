"""A tiny JSON API: every change below is audited by the tracked model, with the request's context."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .models import Note


@csrf_exempt  # an example API without sessions; keep CSRF on for browser forms
@require_http_methods(["GET", "POST"])
def notes(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        note = Note.objects.create(title=request.POST.get("title", "untitled"))
        return JsonResponse({"id": note.pk}, status=201)
    return JsonResponse({"notes": list(Note.objects.values("id", "title", "archived"))})


@csrf_exempt
@require_http_methods(["POST"])
def archive(request: HttpRequest) -> JsonResponse:
    """QuerySet.update: one notes.note.bulk_update event with the count and the primary keys."""
    return JsonResponse({"archived": Note.objects.filter(archived=False).update(archived=True)})
