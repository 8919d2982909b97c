"""The official `openai` Python package against Atelier's OpenAI-compatible endpoints.

Usage: python openai_client.py BASE_URL  (e.g. http://127.0.0.1:8080/v1)
Prints one line per check; exits non-zero on the first failure.
"""
import base64
import sys
import urllib.request

import openai

base_url = sys.argv[1]
client = openai.OpenAI(base_url=base_url, api_key="unused-on-the-embedded-default", max_retries=0)

models = [m.id for m in client.models.list()]
assert "atelier-agent" in models, models
print("ok models:", models)

image = client.images.generate(prompt="an orange circle on a cream ground", n=1, size="64x64")
url = image.data[0].url
assert url and "/v1/artifacts/" in url, image
png = urllib.request.urlopen(url).read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
print("ok image url:", url)

image = client.images.generate(
    prompt="an orange circle on a cream ground", size="64x64", response_format="b64_json"
)
assert base64.b64decode(image.data[0].b64_json) == png, "same request, same image"
print("ok image b64_json")

try:
    client.images.generate(prompt="x", size="4096x4096")
    raise SystemExit("an oversize image was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "size", e.body
    print("ok bad size:", e.body["message"])

chat = client.chat.completions.create(
    model="atelier-agent",
    messages=[{"role": "user", "content": "A warm autumn post: a sun rising over a coffee cup"}],
    extra_body={"brand": "solstice"},
)
content = chat.choices[0].message.content
assert "/v1/artifacts/" in content, content
print("ok chat:", content.splitlines()[0])

stream = client.chat.completions.create(
    model="atelier-agent",
    messages=[{"role": "user", "content": "A warm autumn post: a sun rising over a coffee cup"}],
    extra_body={"brand": "solstice"},
    stream=True,
)
streamed = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
assert "/v1/artifacts/" in streamed, streamed
print("ok chat stream:", len(streamed), "characters")
