import django
from django.http import HttpRequest, HttpResponse, JsonResponse

ITEMS = ["teapot", "kettle", "cup"]


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"Welcome to the shop (Django {django.get_version()})\n", content_type="text/plain")


async def items(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": ITEMS})
