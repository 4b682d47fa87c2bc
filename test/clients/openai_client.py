"""The official `openai` Python package against a running klein-serve, unchanged but for
base_url and api_key (test/e2e/openai-python.test.ts runs it and checks what it prints).

Usage: openai_client.py BASE_URL KEY PNG_PATH. Prints one JSON object: what each call gave,
or, for a call that raised, the exception's class and the fields clients read
(str(e), status_code, type, param, code, request_id).
"""
import base64
import json
import sys

import openai

from png_size import png_size  # test/clients/, the script's own folder



def raised(call) -> dict:
    try:
        call()
    except openai.APIStatusError as e:
        return {
            "class": type(e).__name__,
            "str": str(e),
            "status_code": e.status_code,
            "type": e.type,
            "param": e.param,
            "code": e.code,
            "request_id": e.request_id,
        }
    return {"class": None}


def main() -> None:
    base_url, key, png_path = sys.argv[1:4]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
    out: dict = {"version": openai.__version__}

    r = client.images.generate(model="dall-e-3", prompt="a lighthouse at dusk", size="256x256", extra_body={"steps": 1, "cfg": 1})
    out["generate"] = {"n": len(r.data), "size": png_size(base64.b64decode(r.data[0].b64_json))}

    with open(png_path, "rb") as f:
        e = client.images.edit(model="gpt-image-1", image=f, prompt="make it night", extra_body={"steps": 1, "cfg": 1})
    out["edit"] = {"size": png_size(base64.b64decode(e.data[0].b64_json))}

    out["models"] = [m.id for m in client.models.list()]
    m = client.models.retrieve("gpt-image-1")
    out["retrieve"] = {"id": m.id, "object": m.object, "created": m.created, "owned_by": m.owned_by}

    out["too_many"] = raised(lambda: client.images.generate(prompt="x", n=9))
    out["unknown_model"] = raised(lambda: client.images.generate(model="dall-e-9", prompt="x"))
    out["unknown_model_retrieve"] = raised(lambda: client.models.retrieve("dall-e-9"))
    wrong = openai.OpenAI(base_url=f"{base_url}/v1", api_key="kl_wrong", max_retries=0)
    out["bad_key"] = raised(lambda: wrong.images.generate(prompt="x"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
