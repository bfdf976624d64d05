"""The store's endpoints, all DRF views so that --token guards every one."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.http import HttpResponse
from django.utils.html import format_html, format_html_join
from django.views.static import serve
from rest_framework import generics
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from storeapp.middleware import every
from storeapp.models import Fruit, Upload
from storeapp.serializers import FruitSerializer


class FruitList(generics.ListCreateAPIView):
    """GET lists every product oldest first; POST creates one (JSON or form)."""

    queryset = Fruit.objects.all()
    serializer_class = FruitSerializer


class UploadView(APIView):
    """POST /upload/ with a multipart field `file`: 201 and an empty body."""

    parser_classes = (MultiPartParser,)

    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise ParseError("Empty content")
        number = getattr(request._request, "store_post_number", 0)
        if every(settings.STORE_FAULTS["rename_every"], number):
            upload.name = f"{secrets.token_hex(4)}-{upload.name}"  # the rename fault
        # FileField + FileSystemStorage clean, de-duplicate and truncate the name.
        Upload.objects.create(file=upload)
        return Response(status=201)


class FirstRenderer(BaseContentNegotiation):
    """Pages and images are not negotiated: any Accept header gets them."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MediaImage(APIView):
    """GET or HEAD /media/images/<name>: the stored file, by Django's static serve."""

    content_negotiation_class = FirstRenderer

    def get(self, request: Request, path: str) -> HttpResponse:
        return serve(request, path, document_root=settings.MEDIA_ROOT / "images")


class CatalogPage(APIView):
    """GET /: the HTML catalog, every product with name, weight, text, image."""

    content_negotiation_class = FirstRenderer

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(catalog_html(Fruit.objects.all()), content_type="text/html")


def catalog_html(fruits: object) -> str:
    """The page; every value is escaped by format_html."""
    items = format_html_join(
        "\n",
        "<div class='fruit'><img src='/media/images/{}' alt='' width='300'>"
        "<h2>{}</h2><p>Weight: {} lbs</p><p>{}</p></div>",
        ((f.image_name, f.name, f.weight, f.description) for f in fruits),
    )
    return format_html(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<title>Online Fruit Store</title></head><body>"
        "<h1>Online Fruit Store</h1>\n{}\n</body></html>",
        items,
    )
