"""Strict checks of request bodies and query strings against Google's discovery documents.

A discovery document describes a REST API: its methods (HTTP verb, path template, query
parameters, request schema, OAuth scopes) and the JSON schemas of its resources. The
documents in ``tests/fixtures`` are Google's own, so a body these checks accept has the
shape the real API expects:

    >>> sheets = load("sheets.v4")
    >>> sheets.request_schema("spreadsheets.batchUpdate")
    'BatchUpdateSpreadsheetRequest'
    >>> sheets.validate("BatchUpdateSpreadsheetRequest", {"requests": [{"addSheet": {}}],
    ...                 "includeSpreadsheetInResponse": "yes"})
    ['includeSpreadsheetInResponse: expected a boolean, got a string']

The checks are stricter than Google in two ways, both on purpose: ``null`` is refused
where the schema names a type (Google reads it as "unset"), and an int32 must be a JSON
number (Google also takes a decimal string). Output-only fields are not refused, because
some are what a create call sends (Drive's ``Permission.emailAddress``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"

# Discovery "format" values for whole numbers, with their ranges. int64 and uint64 travel
# as JSON strings in Google's responses and are accepted as strings or numbers.
_INTEGER_FORMATS = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_STRING_INTEGERS = {"int64", "uint64"}
_DECIMAL = re.compile(r"-?\d+")

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


@dataclass(frozen=True)
class Method:
    """One REST method of a discovery document, as the checks need it."""

    id: str
    http_method: str
    # The path below the API's root URL, e.g. /v4/spreadsheets/{spreadsheetId}:batchUpdate.
    path: str
    request: str | None
    parameters: Mapping[str, Mapping[str, Any]] = field(repr=False)
    scopes: tuple[str, ...] = field(repr=False)

    def path_pattern(self) -> re.Pattern[str]:
        """A pattern for the encoded request path; each {name} becomes a named group."""
        pattern = ""
        for literal, name in re.findall(r"([^{]*)(?:\{\+?(\w+)\})?", self.path):
            pattern += re.escape(literal)
            if name:
                pattern += f"(?P<{name}>[^/]+?)"
        return re.compile(pattern)


class Discovery:
    """A parsed discovery document: its methods, schemas and shared query parameters."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.name: str = document["name"]
        self.version: str = document["version"]
        self.revision: str = document["revision"]
        self.schemas: Mapping[str, Mapping[str, Any]] = document["schemas"]
        self.standard_parameters: Mapping[str, Mapping[str, Any]] = document.get(
            "parameters", {}
        )
        service_path = "/" + document.get("servicePath", "")
        self.methods: dict[str, Method] = {}
        for raw in _walk_methods(document):
            self.methods[raw["id"]] = Method(
                id=raw["id"],
                http_method=raw["httpMethod"],
                path=service_path + raw.get("flatPath", raw["path"]),
                request=raw.get("request", {}).get("$ref"),
                parameters=raw.get("parameters", {}),
                scopes=tuple(raw.get("scopes", ())),
            )
        # Most literal characters first, so files/generateIds wins over files/{fileId}.
        self._routes = sorted(
            ((method, method.path_pattern()) for method in self.methods.values()),
            key=lambda route: -len(re.sub(r"\{[^}]*\}", "", route[0].path)),
        )

    # --- methods ----------------------------------------------------------------------

    def method(self, method_id: str) -> Method:
        """The method `method_id`, with or without the API name (``spreadsheets.get``)."""
        method = self.methods.get(method_id) or self.methods.get(
            f"{self.name}.{method_id}"
        )
        if method is None:
            raise KeyError(
                f"the {self.name} {self.version} API has no method {method_id}"
            )
        return method

    def request_schema(self, method_id: str) -> str | None:
        """The schema a method's body must follow; None for a method without a body."""
        return self.method(method_id).request

    def query_parameters(self, method_id: str) -> dict[str, Mapping[str, Any]]:
        """The query parameters a method takes: its own and the API's standard ones."""
        own = self.method(method_id).parameters
        accepted = dict(self.standard_parameters)
        accepted.update(
            (name, spec)
            for name, spec in own.items()
            if spec.get("location") == "query"
        )
        return accepted

    def match(
        self, http_method: str, path: str
    ) -> tuple[Method, dict[str, str]] | None:
        """The method serving `http_method` on an encoded `path`, and its path values."""
        for method, pattern in self._routes:
            if method.http_method != http_method:
                continue
            found = pattern.fullmatch(path)
            if found:
                return method, found.groupdict()
        return None

    # --- checks -----------------------------------------------------------------------

    def validate(self, schema: str, value: Any) -> list[str]:
        """Every way `value` breaks schema `schema`, one located message each."""
        if schema not in self.schemas:
            raise KeyError(f"the {self.name} {self.version} API has no schema {schema}")
        return list(self._errors(value, {"$ref": schema}, ""))

    def has_field(self, schema: str, path: str) -> bool:
        """Whether a field mask path names a field of `schema`.

        `path` is dotted, as in ``gridProperties.rowCount``; ``*`` names every field.
        """
        spec: Mapping[str, Any] = {"$ref": schema}
        for name in path.split("."):
            if name == "*":
                return True
            spec = self._resolve(spec)
            while spec.get("type") == "array":
                spec = self._resolve(spec.get("items", {}))
            properties = spec.get("properties", {})
            if name not in properties:
                return False
            spec = properties[name]
        return True

    def validate_request(self, method_id: str, body: Any) -> list[str]:
        """The body of a call to `method_id`: its schema, and the fields it requires.

        A field can be required by one method only; discovery marks it with
        ``annotations.required`` (Drive's ``Permission.role`` for ``permissions.create``).
        """
        method = self.method(method_id)
        if method.request is None:
            return [] if body is None else ["(body): this method takes no body"]
        if body is None:
            return [f"(body): expected a {method.request}"]

        errors = self.validate(method.request, body)
        properties = self.schemas[method.request].get("properties", {})
        for name, spec in properties.items():
            required_by = spec.get("annotations", {}).get("required", ())
            if method.id in required_by and isinstance(body, dict) and name not in body:
                errors.append(f"{name}: required by {method.id}")
        return errors

    def validate_query(
        self, method_id: str, query: Mapping[str, Sequence[str]]
    ) -> list[str]:
        """The query string of a call to `method_id`, as parsed by urllib's parse_qs."""
        accepted = self.query_parameters(method_id)
        errors = []
        for name, values in query.items():
            spec = accepted.get(name)
            if spec is None:
                errors.append(f"?{name}: unknown query parameter")
                continue
            if len(values) > 1 and not spec.get("repeated"):
                errors.append(f"?{name}: given {len(values)} times, takes one value")
            errors.extend(
                f"?{name}: {problem}"
                for value in values
                if (problem := _query_value_problem(value, spec))
            )
        for name, spec in accepted.items():
            if spec.get("required") and name not in query:
                errors.append(f"?{name}: required")
        return errors

    # --- the walk ---------------------------------------------------------------------

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        return schema

    def _errors(
        self, value: Any, schema: Mapping[str, Any], path: str
    ) -> Iterator[str]:
        schema = self._resolve(schema)
        kind = schema.get("type", "any")
        if kind == "any":
            return
        if kind == "object":
            yield from self._object_errors(value, schema, path)
        elif kind == "array":
            if not isinstance(value, list):
                yield _wrong_type(path, "an array", value)
                return
            for index, item in enumerate(value):
                yield from self._errors(
                    item, schema.get("items", {}), f"{path}[{index}]"
                )
        else:
            yield from _scalar_errors(value, schema, path)

    def _object_errors(
        self, value: Any, schema: Mapping[str, Any], path: str
    ) -> Iterator[str]:
        if not isinstance(value, dict):
            yield _wrong_type(path, "an object", value)
            return
        properties = schema.get("properties")
        # A map: additionalProperties describes every value, whatever its key.
        extra = schema.get("additionalProperties")
        if properties is None and extra is None:
            return

        for key, item in value.items():
            if properties and key in properties:
                yield from self._errors(item, properties[key], _join(path, key))
            elif extra is not None:
                yield from self._errors(item, extra, f'{path}["{key}"]')
            else:
                yield f"{_join(path, key)}: unknown field"


def _walk_methods(resource: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from resource.get("methods", {}).values()
    for child in resource.get("resources", {}).values():
        yield from _walk_methods(child)


def _scalar_errors(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[str]:
    kind, number_format = schema["type"], schema.get("format")

    if number_format in _INTEGER_FORMATS:
        problem = _integer_problem(value, number_format)
        if problem:
            yield f"{_where(path)}: {problem}"
            return
    elif kind == "string" and not isinstance(value, str):
        yield _wrong_type(path, "a string", value)
        return
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        yield _wrong_type(path, "an integer", value)
        return
    elif kind == "number" and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        yield _wrong_type(path, "a number", value)
        return
    elif kind == "boolean" and not isinstance(value, bool):
        yield _wrong_type(path, "a boolean", value)
        return

    allowed = schema.get("enum")
    if allowed is not None and value not in allowed:
        yield f"{_where(path)}: {value!r} is not one of {', '.join(allowed)}"


def _integer_problem(value: Any, number_format: str) -> str | None:
    if isinstance(value, str) and number_format in _STRING_INTEGERS:
        if not _DECIMAL.fullmatch(value):
            return f"expected a whole number as a decimal string, got {value!r}"
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return f"expected an integer ({number_format}), got {_json_type(value)}"

    low, high = _INTEGER_FORMATS[number_format]
    if not low <= value <= high:
        return f"{value} is out of range for {number_format}"
    return None


def _query_value_problem(value: str, spec: Mapping[str, Any]) -> str | None:
    kind = spec.get("type")
    if kind == "boolean" and value not in ("true", "false"):
        return f"expected true or false, got {value!r}"
    if kind == "integer" and not _DECIMAL.fullmatch(value):
        return f"expected an integer, got {value!r}"
    allowed = spec.get("enum")
    if allowed is not None and value not in allowed:
        return f"{value!r} is not one of {', '.join(allowed)}"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return path or "(body)"


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _wrong_type(path: str, expected: str, value: Any) -> str:
    return f"{_where(path)}: expected {expected}, got {_json_type(value)}"


@functools.cache
def load(name: str) -> Discovery:
    """The discovery document ``tests/fixtures/<name>.json``, e.g. ``sheets.v4``."""
    return Discovery(
        json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    )
