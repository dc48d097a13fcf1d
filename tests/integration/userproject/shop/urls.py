from django.contrib import admin
from django.urls import path

from shop import views

urlpatterns = [path("", views.home), path("items", views.items), path("admin/", admin.site.urls)]
