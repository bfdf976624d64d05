"""URL patterns as on the real store.

`^fruits/` has no end anchor, like the lab project's old-style `url()`, so
GET /fruits/<anything> answers the list too.
"""

from __future__ import annotations

from django.urls import path, re_path

from storeapp.views import CatalogPage, FruitList, MediaImage, UploadView

urlpatterns = [
    path("", CatalogPage.as_view()),
    re_path(r"^fruits/", FruitList.as_view()),
    path("upload/", UploadView.as_view()),
    re_path(r"^media/images/(?P<path>.*)$", MediaImage.as_view()),
]
