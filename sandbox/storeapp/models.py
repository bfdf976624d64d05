"""The store's models: products and uploaded images.

Field options follow the contract observed on the real store: name and
image_name may be left out or blank, description may be left out but not
sent blank, description is limited to 5000 characters.
"""

from __future__ import annotations

from django.db import models


class Fruit(models.Model):
    """One catalog product."""

    name = models.CharField(max_length=100, blank=True, default="")
    weight = models.IntegerField()
    # TextField's max_length is not a database limit, but DRF turns it into
    # the serializer's "no more than 5000 characters" check.
    description = models.TextField(max_length=5000, default="")
    image_name = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ("id",)


class Upload(models.Model):
    """One uploaded image; the FileField's storage names and writes the file.

    FileField's default max_length of 100 bounds `images/<name>`, which is
    why Django truncates long names.
    """

    file = models.FileField(upload_to="images/")
