"""A FastAPI application with the routes the framework tests exercise (ASGI)."""
import asyncio
import contextlib
import hashlib
from typing import Optional

from fastapi import BackgroundTasks, FastAPI, File, Form, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse

background_done: list = []


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"started": "yes"}


app = FastAPI(lifespan=lifespan)


@app.api_route("/hello", methods=["GET", "HEAD"], response_class=PlainTextResponse)
async def hello():
    return "hello"


@app.get("/json")
async def json_route():
    return {"message": "Hello, World!"}


@app.get("/items/{item_id}")
async def item(item_id: int, q: Optional[str] = None):
    return {"id": item_id, "q": q}


@app.post("/form")
async def form(request: Request):
    return dict(await request.form())


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: Optional[str] = Form(None)):
    data = await file.read()
    return {"name": file.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "note": note}


@app.post("/echo")
async def echo(request: Request):
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        h.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


@app.get("/stream")
async def stream():
    async def gen():
        for i in range(20):
            yield f"chunk {i}\n"
    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/cookies")
async def cookies(response: Response):
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return "cookies"


@app.get("/headers")
async def headers(request: Request):
    return PlainTextResponse("headers", headers={"X-Custom": "custom value",
                                                 "X-Echo": request.headers.get("x-test", "")})


@app.get("/empty", status_code=204)
async def empty():
    return Response(status_code=204)


@app.get("/notmodified")
async def notmodified():
    return Response(status_code=304)


@app.get("/error")
async def error():
    raise RuntimeError("boom")


@app.post("/background")
async def background(tasks: BackgroundTasks):
    async def task():
        await asyncio.sleep(0.01)
        background_done.append("done")
    tasks.add_task(task)
    return PlainTextResponse("scheduled")


@app.get("/background/result")
async def background_result():
    return {"done": len(background_done)}


@app.get("/sleep")
async def sleep():
    await asyncio.sleep(0.3)
    return PlainTextResponse("slept")


@app.get("/state")
async def state(request: Request):
    return {"started": request.state.started}


@app.get("/outbound")
async def outbound(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return PlainTextResponse(line.decode().strip())
