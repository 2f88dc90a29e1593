from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from sealog.integrations.django import get_log

from .models import Author, Book


def whoami(request: HttpRequest) -> HttpResponse:
    return HttpResponse(get_log().emit(action="page.view"))


@transaction.non_atomic_requests
async def whoami_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse(get_log().emit(action="page.view"))


@csrf_exempt
def reprice(request: HttpRequest, pk: int) -> HttpResponse:
    book = Book.objects.get(pk=pk)
    book.price = Decimal(request.POST["price"])
    book.save()
    if request.POST.get("fail"):
        raise RuntimeError("after the save: ATOMIC_REQUESTS rolls it back")
    return HttpResponse("ok")


@csrf_exempt
def add_author(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(Author.objects.create(name=request.POST["name"]).pk))


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def parts() -> Iterator[str]:
        for part in range(3):
            yield get_log().emit(action="export.chunk", metadata={"part": part}) + "\n"

    return StreamingHttpResponse(parts())
