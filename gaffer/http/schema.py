"""Request bodies of the HTTP API: each declared once, as a JSON Schema, used both to
validate requests and to describe them in ``/openapi.json``.

The validator understands the subset these schemas use: ``type`` (one or a list),
``properties``, ``required``, ``additionalProperties: false``, ``items``, ``maxItems``,
``minimum``, ``minLength``, ``enum`` and ``oneOf``. Its errors name the field:
``body.numprocesses: expected an integer, got 'two'``.

A job config is taken in the form ``ProcessConfig.to_dict()`` gives (every key of it), and
shown in that form too (:func:`config_json`), so what a client reads it can send back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gaffer.core.options import OPTIONS
from gaffer.errors import ProtocolError

Schema = dict[str, Any]

_NAMES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


class SchemaError(ProtocolError):
    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


def _is(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "null":
        return value is None
    raise ValueError(f"unknown schema type {kind}")


def validate(value: Any, schema: Schema, where: str = "body") -> None:
    """Raise SchemaError naming the first field that does not fit ``schema``."""
    if "oneOf" in schema:
        for option in schema["oneOf"]:
            try:
                validate(value, option, where)
            except SchemaError:
                continue
            return
        raise SchemaError(where, f"expected {_describe(schema)}, got {_show(value)}")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, kind) for kind in kinds):
            raise SchemaError(
                where, f"expected {' or '.join(_NAMES[k] for k in kinds)}, got {_show(value)}"
            )
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(where, f"expected one of {schema['enum']}, got {_show(value)}")
    if "minimum" in schema and _is(value, "number") and value < schema["minimum"]:
        raise SchemaError(where, f"expected at least {schema['minimum']}, got {value}")
    if "minLength" in schema and isinstance(value, str) and len(value) < schema["minLength"]:
        raise SchemaError(where, "expected a non-empty string")
    if "maxItems" in schema and isinstance(value, list) and len(value) > schema["maxItems"]:
        limit = schema["maxItems"]
        expected = "an empty list" if limit == 0 else f"at most {limit} items"
        why = f" ({schema['description']})" if "description" in schema else ""
        raise SchemaError(where, f"expected {expected}{why}, got {_show(value)}")
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        for key in schema.get("required", ()):
            if key not in value:
                raise SchemaError(f"{where}.{key}", "required")
        if schema.get("additionalProperties") is False:
            unknown = sorted(set(value) - set(properties))
            if unknown:
                raise SchemaError(
                    f"{where}.{unknown[0]}",
                    f"unknown field; known: {', '.join(sorted(properties))}",
                )
        for key, item in value.items():
            if key in properties:
                validate(item, properties[key], f"{where}.{key}")
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            validate(item, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{index}]")


def _describe(schema: Schema) -> str:
    if "oneOf" in schema:
        return " or ".join(_describe(option) for option in schema["oneOf"])
    kinds = schema.get("type", "anything")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    return " or ".join(_NAMES.get(kind, kind) for kind in kinds)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


STRING = {"type": "string"}
WORDS = {"type": "array", "items": STRING}
ENV = {"type": "object", "additionalProperties": STRING}
SECONDS = {"type": "number", "minimum": 0}

# every job option's schema is declared with the option (gaffer/core/options.py)
JOB_CONFIG: Schema = {
    "type": "object",
    "description": "A job: ProcessConfig options (docs/configuration.md), plus `start`.",
    "required": ["cmd"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "cmd": {"type": "string", "minLength": 1},
        **{option.name: {**option.schema, "description": option.help} for option in OPTIONS},
        "start": {"type": "boolean", "description": "start it once loaded (default true)"},
    },
}
SCALE: Schema = {
    "type": "object",
    "required": ["scale"],
    "additionalProperties": False,
    "properties": {
        "scale": {
            "type": ["integer", "string"],
            "description": 'n or "+n" adds, -n or "-n" subtracts, "=n" sets',
        }
    },
}
SIGNAL: Schema = {
    "type": "object",
    "required": ["signal"],
    "additionalProperties": False,
    "properties": {
        "signal": {
            "type": ["integer", "string"],
            "description": 'a number or a name: 15, "TERM", "SIGTERM"',
        }
    },
}
COMMIT: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"graceful_timeout": SECONDS, "env": ENV},
}
PERMISSIONS: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "admin": {"type": "boolean"},
        "create_key": {"type": "boolean"},
        "create_user": {"type": "boolean"},
        "manage": WORDS,
        "write": WORDS,
        "read": WORDS,
    },
}
NEW_KEY: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["permissions"],
    "properties": {
        "permissions": PERMISSIONS,
        "label": STRING,
        "parent": {"type": ["string", "null"]},
        "ttl": {"type": ["number", "null"], "minimum": 1},
    },
}
NEW_USER: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["username", "password"],
    "properties": {
        "username": {"type": "string", "minLength": 1},
        "password": {"type": "string", "minLength": 1},
        "user_type": {"type": "integer", "enum": [0, 1]},
        "key": {"type": ["string", "null"]},
        "extra": {"type": "object"},
    },
}
UPDATE_USER: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "password": {"type": "string", "minLength": 1},
        "user_type": {"type": "integer", "enum": [0, 1]},
        "key": {"type": ["string", "null"]},
        "extra": {"type": "object"},
    },
}
PASSWORD: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["password"],
    "properties": {"password": {"type": "string", "minLength": 1}},
}
USER_KEY: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key"],
    "properties": {"key": {"type": ["string", "null"]}},
}
CLUSTER_JOB: Schema = {
    "type": "object",
    "description": "A cluster job (docs/cluster.md): the options of a job, its session "
    "(default `default`), and `nodes` (runs on that many nodes) or `per_node` (1: runs on "
    "every node).",
    "required": ["name", "cmd"],
    "additionalProperties": False,
    "properties": {
        **JOB_CONFIG["properties"],
        "session": {"type": "string", "minLength": 1},
        "nodes": {"type": "integer", "minimum": 1},
        "per_node": {"type": "integer", "enum": [1]},
    },
}


def config_json(config: Mapping[str, Any]) -> dict[str, Any]:
    """A job's config (``ProcessConfig.to_dict()``) as the API shows it: the same keys, and
    ``custom_channels``, open files of a program embedding the manager, as their descriptor
    numbers (sending them back is refused: only ``[]`` crosses HTTP)."""
    out = dict(config)
    channels = out.get("custom_channels")
    if channels:
        out["custom_channels"] = [_descriptor(channel) for channel in channels]
    return out


def _descriptor(channel: Any) -> int:
    if isinstance(channel, int):
        return channel
    try:
        return channel.fileno()
    except (OSError, ValueError):  # closed since: a file says so by raising, a socket by -1
        return -1


SCHEMAS = {
    "JobConfig": JOB_CONFIG,
    "Scale": SCALE,
    "Signal": SIGNAL,
    "Commit": COMMIT,
    "Permissions": PERMISSIONS,
    "NewKey": NEW_KEY,
    "NewUser": NEW_USER,
    "UpdateUser": UPDATE_USER,
    "Password": PASSWORD,
    "UserKey": USER_KEY,
    "ClusterJob": CLUSTER_JOB,
}
