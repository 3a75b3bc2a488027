"""A Django application with the routes the framework tests exercise (WSGI)."""
import hashlib
import time

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="netcore-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATA_UPLOAD_MAX_MEMORY_SIZE=None,
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    HttpResponse, HttpResponseNotModified, JsonResponse, StreamingHttpResponse)
from django.urls import path  # noqa: E402
from django.views.decorators.http import require_http_methods  # noqa: E402

background_done: list = []


@require_http_methods(["GET", "HEAD"])
def hello(request):
    return HttpResponse("hello", content_type="text/plain")


def json_route(request):
    return JsonResponse({"message": "Hello, World!"})


def item(request, item_id):
    return JsonResponse({"id": item_id, "q": request.GET.get("q")})


def form(request):
    return JsonResponse(request.POST.dict())


def upload(request):
    f = request.FILES["file"]
    data = f.read()
    return JsonResponse({"name": f.name, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "note": request.POST.get("note")})


def echo(request):
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = request.read(65536)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
    return JsonResponse({"size": size, "sha256": h.hexdigest()})


def stream(request):
    return StreamingHttpResponse((f"chunk {i}\n" for i in range(20)), content_type="text/plain")


def cookies(request):
    r = HttpResponse("cookies")
    r.set_cookie("a", "1")
    r.set_cookie("b", "2")
    return r


def headers(request):
    r = HttpResponse("headers")
    r["X-Custom"] = "custom value"
    r["X-Echo"] = request.headers.get("X-Test", "")
    return r


def empty(request):
    return HttpResponse(status=204)


def notmodified(request):
    return HttpResponseNotModified()


def error(request):
    raise RuntimeError("boom")


def background(request):
    r = HttpResponse("scheduled")
    r._resource_closers.append(lambda: background_done.append("done"))  # runs at close()
    return r


def background_result(request):
    return JsonResponse({"done": len(background_done)})


def sleep(request):
    time.sleep(0.3)
    return HttpResponse("slept")


urlpatterns = [
    path("hello", hello), path("json", json_route), path("items/<int:item_id>", item),
    path("form", form), path("upload", upload), path("echo", echo), path("stream", stream),
    path("cookies", cookies), path("headers", headers), path("empty", empty),
    path("notmodified", notmodified), path("error", error), path("background", background),
    path("background/result", background_result), path("sleep", sleep),
]

app = get_wsgi_application()
