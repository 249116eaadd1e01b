from __future__ import annotations

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=50)


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    status = models.CharField(max_length=20, default="new")
    total = models.IntegerField(default=0)
    note = models.TextField(default="")


class RushOrder(Order):
    """A proxy: its saves send RushOrder as the sender."""

    class Meta:
        proxy = True


class Place(models.Model):
    city = models.CharField(max_length=50)


class Restaurant(Place):
    """A multi-table child of Place."""

    cuisine = models.CharField(max_length=50)


class Tag(models.Model):
    name = models.CharField(max_length=50)


class Post(models.Model):
    title = models.CharField(max_length=100)
    tags = models.ManyToManyField(Tag, related_name="posts")


class Plain(models.Model):
    """No rule reads it."""

    value = models.IntegerField(default=0)
    label = models.CharField(max_length=20, default="")


class Watched(models.Model):
    """The same shape as Plain, with a rule."""

    value = models.IntegerField(default=0)
    label = models.CharField(max_length=20, default="")
