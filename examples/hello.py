"""Example netcore application: plaintext and JSON routes.

Run from the repository root:
    netcore examples.hello:app            (or: python -m netcore examples.hello:app)
    curl http://127.0.0.1:8000/plaintext
"""
import netcore

_TEXT_HEADERS = {"content-type": "text/plain"}


def app(request: netcore.Request):
    path = request.path
    if path == "/json":
        return {"message": "Hello, World!"}           # -> application/json
    if path == "/plaintext" or path == "/":
        return netcore.Response(b"Hello, World!", headers=_TEXT_HEADERS)
    if path == "/echo" and request.method == "POST":
        return netcore.Response(request.body, headers={"content-type": request.headers.get("content-type", "application/octet-stream")})
    return netcore.Response(b"Not Found\n", status=404, headers=_TEXT_HEADERS)


if __name__ == "__main__":
    netcore.serve(app, host="127.0.0.1", port=8000)
