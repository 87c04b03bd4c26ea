"""Building blocks of the OpenAPI document (daemon.http.openapi): scalar schemas, objects,
listings, parameters and the error answers every route shares."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from daemon.core.events import MAX_ID


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NUMBER = {"type": "number"}
TIME = {"type": "string", "format": "date-time"}
N_STR, N_INT, N_TIME = nullable(STR), nullable(INT), nullable(TIME)
DELIVERY_STATUS = {"enum": ["received", "processed", "ignored", "rejected", "failed"]}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema; every property is required unless `required` says otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(item_ref: str) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": {"$ref": item_ref}},
                "next_before_id": N_INT})


def answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = ref("Error")


def errors(*codes: int) -> dict[str, Any]:
    text = {400: "Bad filter or malformed JSON", 401: "Missing or wrong API token",
            403: "This webhook is off: its secret is not configured",
            404: "Not found", 409: "Conflict with the current state",
            413: "Body larger than [http] max_body_bytes",
            415: "Body is not application/json", 422: "Valid JSON, invalid content",
            503: "Storage unavailable; retry"}
    return {str(code): answer(ERR, text[code]) for code in codes}


def query(name: str, description: str, schema: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or STR}


ID_PARAM = {"name": "id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}
SCHEMA_REF = "#/components/schemas/{model}"


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The component schemas of request models, named by class, with the models they nest
    beside them (pydantic's `$defs` become components)."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMA_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def parameters_of(model: type[BaseModel], location: str = "query") -> list[dict[str, Any]]:
    """The parameters a model of query parameters or headers reads. An optional one may be
    left out, never sent as null: the null branch pydantic documents is dropped."""
    found = []
    document = model.model_json_schema()
    for name, schema in document["properties"].items():
        schema.pop("title", None)
        description = schema.pop("description", None)
        if schema.get("default", 0) is None:
            del schema["default"]
        branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            schema.update(branches[0])
        elif branches:
            schema["anyOf"] = branches
        found.append({"name": name, "in": location,
                      "required": name in document.get("required", ()),
                      **({"description": description} if description else {}),
                      "schema": schema})
    return found


def model_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """A request body checked by `model` (a component of the same name)."""
    return json_body(ref(model.__name__), required)


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}
