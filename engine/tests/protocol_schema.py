"""protocol/messages.schema.json, the protocol's one definition of its messages (written from
src/worker/protocol-messages.ts), and a check of a header against it.

The check implements exactly the JSON Schema keywords that file uses: `jsonschema` is not an
engine dependency, and these few are all the schema needs. A keyword outside the set is an
error, not ignored, so the schema cannot grow a rule this check would silently skip.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "protocol" / "messages.schema.json"

ANNOTATIONS = {"$schema", "title", "description"}
KEYWORDS = {"type", "properties", "required", "additionalProperties", "const", "enum", "anyOf", "oneOf", "$ref", "$defs",
            "items", "maxItems", "minimum", "maximum", "minLength", "pattern"} | ANNOTATIONS


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def message_errors(header: Any) -> list[str]:
    """What is wrong with `header` as a protocol message (empty: it is valid)."""
    if not isinstance(header, dict) or header.get("type") not in schema()["$defs"]:
        return [f"not a message of any known type: {header!r:.200}"]
    return errors(header, schema())


def errors(value: Any, rule: dict, path: str = "") -> list[str]:
    unknown = set(rule) - KEYWORDS
    if unknown:
        raise ValueError(f"{path or '/'}: the schema uses {sorted(unknown)}, which this check does not implement")
    if "$ref" in rule:
        return errors(value, _resolve(rule["$ref"]), path)
    if "oneOf" in rule:
        matching = [alt for alt in rule["oneOf"] if not errors(value, alt, path)]
        return [] if len(matching) == 1 else [f"{path or '/'}: matches {len(matching)} of oneOf's alternatives, not one"]
    if "anyOf" in rule:
        found = [errors(value, alt, path) for alt in rule["anyOf"]]
        return [] if any(not e for e in found) else [f"{path or '/'}: matches none of {[e[0] for e in found]}"]
    if "type" in rule and not _has_type(value, rule["type"]):
        return [f"{path or '/'}: expected {rule['type']}, got {value!r:.80}"]
    out = []
    if "const" in rule and not _same(value, rule["const"]):
        out.append(f"{path or '/'}: must be {rule['const']!r}, got {value!r:.80}")
    if "enum" in rule and not any(_same(value, option) for option in rule["enum"]):
        out.append(f"{path or '/'}: must be one of {rule['enum']}, got {value!r:.80}")
    if "minimum" in rule and value < rule["minimum"]:
        out.append(f"{path or '/'}: below {rule['minimum']}")
    if "maximum" in rule and value > rule["maximum"]:
        out.append(f"{path or '/'}: above {rule['maximum']}")
    if "minLength" in rule and len(value) < rule["minLength"]:
        out.append(f"{path or '/'}: shorter than {rule['minLength']}")
    if "pattern" in rule and not re.search(rule["pattern"], value):
        out.append(f"{path or '/'}: does not match {rule['pattern']}")
    if isinstance(value, dict):
        properties = rule.get("properties", {})
        out += [f"{path}/{name}: missing" for name in rule.get("required", []) if name not in value]
        if rule.get("additionalProperties", True) is False:
            out += [f"{path}/{name}: not in the schema" for name in value if name not in properties]
        for name, sub in properties.items():
            if name in value:
                out += errors(value[name], sub, f"{path}/{name}")
    if "maxItems" in rule and len(value) > rule["maxItems"]:
        out.append(f"{path or '/'}: more than {rule['maxItems']} items")
    if isinstance(value, list) and "items" in rule:
        for i, item in enumerate(value):
            out += errors(item, rule["items"], f"{path}/{i}")
    return out


def _resolve(ref: str) -> dict:
    if not ref.startswith("#/$defs/"):
        raise ValueError(f"only local $defs references are implemented, got {ref}")
    return schema()["$defs"][ref[len("#/$defs/"):]]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _has_type(v: Any, kind: str) -> bool:
    """JSON types; as in JSON, 5 and 5.0 are the same number, and an integer."""
    if kind == "integer":
        return _is_number(v) and float(v).is_integer()
    return {
        "object": lambda: isinstance(v, dict),
        "array": lambda: isinstance(v, list),
        "string": lambda: isinstance(v, str),
        "number": lambda: _is_number(v),
        "boolean": lambda: isinstance(v, bool),
        "null": lambda: v is None,
    }[kind]()


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (_is_number(a) and _is_number(b) and a == b)
