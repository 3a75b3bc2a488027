"""The FastAPI row: one JSON endpoint, as a FastAPI user would write it."""
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/json")
async def json_endpoint():
    return {"message": "Hello, World!"}


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext():  # the suite's readiness probe asks for it
    return "Hello, World!"
