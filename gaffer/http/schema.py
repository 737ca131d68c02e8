"""Request bodies of the HTTP API: each declared once, as a JSON Schema, used both to
validate requests and to describe them in ``/openapi.json``.

The validator understands the subset these schemas use: ``type`` (one or a list),
``properties``, ``required``, ``additionalProperties: false``, ``items``, ``minimum``,
``minLength``, ``enum`` and ``oneOf``. Its errors name the field: ``body.numprocesses:
expected an integer, got 'two'``.
"""

from __future__ import annotations

from typing import Any

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
COUNT = {"type": "integer", "minimum": 0}
SECONDS = {"type": "number", "minimum": 0}
LOGFILE = {"type": ["string", "null"], "minLength": 1}

JOB_CONFIG: Schema = {
    "type": "object",
    "description": "A job: ProcessConfig options (docs/embedding.md), plus `start`.",
    "required": ["cmd"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "cmd": {"type": "string", "minLength": 1},
        "args": {"oneOf": [STRING, WORDS]},
        "env": ENV,
        "os_env": {"type": "boolean"},
        "uid": {"type": ["string", "integer", "null"]},
        "gid": {"type": ["string", "integer", "null"]},
        "cwd": {"type": ["string", "null"]},
        "shell": {"type": "boolean"},
        "detach": {"type": "boolean"},
        "numprocesses": COUNT,
        "flapping": {
            "oneOf": [
                {"type": "null"},
                STRING,
                {"type": "array", "items": {"type": "number"}},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "attempts": {"type": "integer", "minimum": 1},
                        "window": SECONDS,
                        "retry_in": SECONDS,
                        "max_retry": {"type": "integer", "minimum": 1},
                    },
                },
            ]
        },
        "redirect_output": WORDS,
        "redirect_input": {"type": "boolean"},
        "custom_streams": WORDS,
        "graceful_timeout": SECONDS,
        "priority": {"type": "integer"},
        "stdout_logfile": LOGFILE,
        "stderr_logfile": LOGFILE,
        "logfile_max_bytes": COUNT,
        "logfile_backups": COUNT,
        "logfile_buffer_bytes": {"type": "integer", "minimum": 1},
        "log_timestamps": {"type": "boolean"},
        "port": {"type": ["integer", "null"], "minimum": 1},
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
}
