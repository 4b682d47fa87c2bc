"""The engine's messages against protocol/messages.schema.json, the protocol's one definition:
the typed dicts name exactly the schema's fields (and the same required ones, and the same
literal values), every builder's message and every shared fixture is valid, and the check
itself refuses what it must. Every frame the real server sends in tests/test_server.py is
checked too (its Engine.read)."""

import json
import typing
from pathlib import Path

import pytest

from klein_engine import messages
from klein_engine.job import GenerateResult, Preview
from klein_engine.simulated import SimulatedEngine

from .protocol_schema import errors, message_errors, schema

FIXTURES = Path(__file__).resolve().parents[2] / "protocol" / "fixtures"


def _without_none(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def _without_null(rule: dict) -> dict:
    alternatives = [alt for alt in rule.get("anyOf", []) if alt.get("type") != "null"]
    return alternatives[0] if len(alternatives) == 1 else rule


def mismatches(tp, rule: dict, path: str) -> list[str]:
    """Where a typed dict (or a field's type) and the schema's rule name different things."""
    tp, rule = _without_none(tp), _without_null(rule)
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        properties = rule.get("properties", {})
        out = []
        if set(hints) != set(properties):
            out.append(f"{path}: only in the typed dict {sorted(set(hints) - set(properties))}, "
                       f"only in the schema {sorted(set(properties) - set(hints))}")
        if set(tp.__required_keys__) != set(rule.get("required", [])):
            out.append(f"{path}: required {sorted(tp.__required_keys__)} in the typed dict, {sorted(rule.get('required', []))} in the schema")
        for name in set(hints) & set(properties):
            out += mismatches(hints[name], properties[name], f"{path}.{name}")
        return out
    if typing.get_origin(tp) is list:
        return mismatches(typing.get_args(tp)[0], rule.get("items", {}), f"{path}[]")
    if typing.get_origin(tp) is typing.Literal:
        allowed = [rule["const"]] if "const" in rule else rule.get("enum")
        if allowed is None or set(typing.get_args(tp)) != set(allowed):
            return [f"{path}: {typing.get_args(tp)} in the typed dict, {allowed} in the schema"]
    return []


def test_every_message_has_a_typed_dict_with_the_schemas_fields():
    assert set(messages.MESSAGES) == set(schema()["$defs"])
    for name, typed in messages.MESSAGES.items():
        assert mismatches(typed, schema()["$defs"][name], name) == []


def test_the_typed_dict_check_sees_a_field_one_side_lacks():
    class Renamed(typing.TypedDict):
        v: typing.Literal[1]
        type: typing.Literal["cancel"]
        job_id: str

    assert mismatches(Renamed, schema()["$defs"]["cancel"], "cancel")


def test_builders_write_valid_messages(engine):
    result = GenerateResult(width=2, height=2, seed=2**53 - 1, rgb=b"\0" * 12,
                            timings={"text_ms": 1.0, "denoise_ms": 2.0, "decode_ms": 3.0, "total_ms": 6.0})
    built = [
        messages.ready(engine.facts(), "0.1.0"),
        messages.ready(SimulatedEngine.load("simulated:5").facts(), "0.1.0"),
        messages.progress("j", 1, 4, None),
        messages.progress("j", 2, 4, Preview(width=2, height=1, rgb=b"\0" * 6)),
        messages.result("j", result),
        messages.error(None, "internal", "cannot load"),
        *(messages.error("j", code, "m") for code in messages.ERROR_CODES),
    ]
    for message in built:
        assert message_errors(message) == [], message


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_is_valid(path):
    assert message_errors(json.loads(path.read_text(encoding="utf-8"))["header"]) == []


def test_the_check_refuses_what_the_schema_refuses():
    ok = {"v": 1, "type": "progress", "id": "j", "step": 1, "total": 4}
    assert message_errors(ok) == [] and message_errors({**ok, "step": 1.0}) == []
    for bad in ({**ok, "eta_ms": 3}, {k: v for k, v in ok.items() if k != "total"}, {**ok, "step": True}, {**ok, "step": 0},
                {**ok, "id": ""}, {**ok, "preview": {"width": 2}}, {**ok, "v": 2}, {**ok, "type": "telemetry"}):
        assert message_errors(bad), bad
    with pytest.raises(ValueError, match="does not implement"):
        errors(1, {"multipleOf": 16})
