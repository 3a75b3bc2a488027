"""A Flask application with the routes the framework tests exercise (WSGI)."""
import hashlib
import time

from flask import Flask, Response, jsonify, request

app = Flask(__name__)
background_done: list = []


@app.get("/hello")
def hello():
    return Response("hello", mimetype="text/plain")


@app.get("/json")
def json_route():
    return jsonify(message="Hello, World!")


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, q=request.args.get("q"))


@app.post("/form")
def form():
    return jsonify(dict(request.form))


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(name=f.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   note=request.form.get("note"))


@app.post("/echo")
def echo():
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = request.stream.read(65536)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
    return jsonify(size=size, sha256=h.hexdigest())


@app.get("/stream")
def stream():
    def gen():
        for i in range(20):
            yield f"chunk {i}\n"
    return Response(gen(), mimetype="text/plain")


@app.get("/cookies")
def cookies():
    r = Response("cookies")
    r.set_cookie("a", "1")
    r.set_cookie("b", "2")
    return r


@app.get("/headers")
def headers():
    r = Response("headers")
    r.headers["X-Custom"] = "custom value"
    r.headers["X-Echo"] = request.headers.get("X-Test", "")
    return r


@app.get("/empty")
def empty():
    return "", 204


@app.get("/notmodified")
def notmodified():
    return Response(status=304)


@app.get("/error")
def error():
    raise RuntimeError("boom")


@app.post("/background")
def background():
    r = Response("scheduled")
    r.call_on_close(lambda: background_done.append("done"))  # runs at close()
    return r


@app.get("/background/result")
def background_result():
    return jsonify(done=len(background_done))


@app.get("/sleep")
def sleep():
    time.sleep(0.3)
    return "slept"
