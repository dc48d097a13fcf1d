from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("whoami", views.whoami, name="whoami"),
    path("sync", views.sync_view, name="sync"),
    path("async", views.async_view, name="async"),
    path("slow", views.slow, name="slow"),
    path("db", views.db, name="db"),
    path("broadcast", views.broadcast, name="broadcast"),
]
