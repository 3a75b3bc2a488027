"""The Flask row: one JSON endpoint, as a Flask user would write it."""
from flask import Flask

app = Flask(__name__)


@app.get("/json")
def json_endpoint():
    return {"message": "Hello, World!"}


@app.get("/plaintext")
def plaintext():  # the readiness probe of the suite asks for it
    return "Hello, World!", 200, {"Content-Type": "text/plain"}
