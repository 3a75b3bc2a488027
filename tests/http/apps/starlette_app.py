"""A Starlette application with the routes the framework tests exercise (ASGI)."""
import asyncio
import contextlib
import hashlib

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

background_done: list = []


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"started": "yes"}


async def hello(request: Request):
    return PlainTextResponse("hello")


async def json_route(request: Request):
    return JSONResponse({"message": "Hello, World!"})


async def item(request: Request):
    return JSONResponse({"id": request.path_params["item_id"], "q": request.query_params.get("q")})


async def form(request: Request):
    return JSONResponse(dict(await request.form()))


async def upload(request: Request):
    f = (await request.form())["file"]
    data = await f.read()
    form_data = await request.form()
    return JSONResponse({"name": f.filename, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "note": form_data.get("note")})


async def echo(request: Request):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    return JSONResponse({"size": size, "sha256": h.hexdigest()})


async def stream(request: Request):
    async def gen():
        for i in range(20):
            yield f"chunk {i}\n"
    return StreamingResponse(gen(), media_type="text/plain")


async def cookies(request: Request):
    r = PlainTextResponse("cookies")
    r.set_cookie("a", "1")
    r.set_cookie("b", "2")
    return r


async def headers(request: Request):
    return PlainTextResponse("headers", headers={"X-Custom": "custom value",
                                                 "X-Echo": request.headers.get("x-test", "")})


async def empty(request: Request):
    return Response(status_code=204)


async def notmodified(request: Request):
    return Response(status_code=304)


async def error(request: Request):
    raise RuntimeError("boom")


async def background(request: Request):
    async def task():
        await asyncio.sleep(0.01)
        background_done.append("done")
    return PlainTextResponse("scheduled", background=BackgroundTask(task))


async def background_result(request: Request):
    return JSONResponse({"done": len(background_done)})


async def sleep(request: Request):
    await asyncio.sleep(0.3)
    return PlainTextResponse("slept")


async def state(request: Request):
    return JSONResponse({"started": request.state.started})


async def outbound(request: Request):
    port = int(request.query_params["port"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return PlainTextResponse(line.decode().strip())


app = Starlette(lifespan=lifespan, routes=[
    Route("/hello", hello), Route("/json", json_route), Route("/items/{item_id:int}", item),
    Route("/form", form, methods=["POST"]), Route("/upload", upload, methods=["POST"]),
    Route("/echo", echo, methods=["POST"]), Route("/stream", stream), Route("/cookies", cookies),
    Route("/headers", headers), Route("/empty", empty), Route("/notmodified", notmodified),
    Route("/error", error), Route("/background", background, methods=["POST"]),
    Route("/background/result", background_result), Route("/sleep", sleep),
    Route("/state", state), Route("/outbound", outbound),
])
