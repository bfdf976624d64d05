"""DRF serializer of products: validation and error messages are DRF's."""

from __future__ import annotations

from typing import ClassVar

from django.db.backends.base.operations import BaseDatabaseOperations
from rest_framework import serializers

from storeapp.models import Fruit

# The 32-bit range Django gives IntegerField on MySQL and PostgreSQL (and the
# real store answers with); Django 5 on SQLite would allow 64 bits.
WEIGHT_MIN, WEIGHT_MAX = BaseDatabaseOperations.integer_field_ranges["IntegerField"]


class FruitSerializer(serializers.ModelSerializer):
    class Meta:
        model = Fruit
        fields = ("id", "name", "weight", "description", "image_name")
        extra_kwargs: ClassVar[dict] = {
            "weight": {"min_value": WEIGHT_MIN, "max_value": WEIGHT_MAX}
        }
