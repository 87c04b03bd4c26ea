"""What the API routes read from a request: path ids, query parameters, headers and JSON
bodies, each checked by its request model (daemon.http.models) so a bad value is a 400 (422
for a body's content, 404 for a path id) naming the field and the rule, never a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from daemon.http.errors import ApiError
from daemon.http.models import ID_DIGITS, Paging, describe
from daemon.store.queries import BadFilter, Page

Handler = Callable[[web.Request], Awaitable[web.Response]]
Model = TypeVar("Model", bound=BaseModel)


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not ID_DIGITS.fullmatch(raw):
        raise ApiError(404, f"no such id: {raw!r}")
    return int(raw)


def checked(model: type[Model], data: Any, status: int) -> Model:
    """`data` as `model`, or an `ApiError(status)` naming each field and the rule it broke."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ApiError(status, describe(err)) from None


def body_of(model: type[Model], body: Any) -> Model:
    """A JSON body (already parsed) as its request model; 422 when it does not fit."""
    return checked(model, body, 422)


def headers_of(request: web.Request, model: type[Model]) -> Model:
    """The headers a route reads (the model's aliases, looked up without case), as their
    model; 400 when one does not fit."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    return checked(model, {name: request.headers[name] for name in names
                           if name in request.headers}, 400)


def query_of(request: web.Request, model: type[Model]) -> Model:
    """The query parameters as their model; 400 when one does not fit."""
    # dict() of a multidict keeps each name's first value, as .get() does.
    return checked(model, dict(request.query), 400)


def listing_query(request: web.Request, model: type[Paging]
                  ) -> tuple[Page, dict[str, str | None]]:
    """A listing's page and its filters (as given, for the read views), checked by `model`."""
    params = query_of(request, model)
    names = set(type(params).model_fields) - set(Paging.model_fields)
    return (Page(params.limit, params.before_id),
            {name: request.query.get(name) for name in sorted(names)})


def listing_call(handler: Handler) -> Handler:
    """Translate a filter the read view refuses into a 400."""
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except BadFilter as err:
            raise ApiError(400, str(err)) from None
    return wrapped
