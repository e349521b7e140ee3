"""The example shop's URLs."""

from __future__ import annotations

from django.urls import path

from examples.django import views

urlpatterns = [
    path("", views.home),
    path("buy", views.buy),
    path("thanks", views.thanks),
]
