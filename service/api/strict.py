"""The strict marshmallow base of every protocol's wire schemas (JSON API, OIP, CDS Hooks), with
an error budget so that no body can make its error answer, or the work of finding it, grow with it.

- StrictSchema: unknown members are refused (unknown = RAISE). While the request's budget lasts
  (MAX_LISTED_ERRORS unknown members in all, one error each) marshmallow lists them and validates
  the object's fields as usual. An object with more unknown members than the budget has left is
  refused at once: the members the budget still covers are listed, the others only counted (the
  OMITTED entry of the messages dict, which flatten_errors turns into `errors_omitted`), and its
  fields are not validated. A 3.4 MB body of unknown keys took 2.4 s and came back as 40 MB.
- BoundedList: a list refused on its length before any item is deserialised (validate.Length
  runs only after every item was).
- load(schema, payload): schema.load with a fresh budget for this request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import islice
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load

from service.errors import MAX_LISTED_ERRORS


class _Omitted:
    """The key, in a marshmallow messages dict, of the number of errors counted but not listed
    (an object, so no member name a client sends can collide with it)."""

    def __repr__(self) -> str:
        return "OMITTED"


OMITTED = _Omitted()
_budget: ContextVar[list[int] | None] = ContextVar("ecmo_unknown_member_budget", default=None)


@contextmanager
def error_budget() -> Iterator[None]:
    token = _budget.set([MAX_LISTED_ERRORS])
    try:
        yield
    finally:
        _budget.reset(token)


def load(schema: Schema, payload: Any) -> Any:
    """schema.load(payload) with this request's own budget of listed unknown members."""
    with error_budget():
        return schema.load(payload)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE

    def _known_members(self) -> frozenset[str]:
        known: frozenset[str] | None = self.__dict__.get("_ecmo_known")
        if known is None:
            known = frozenset(f.data_key or name for name, f in self.load_fields.items())
            self.__dict__["_ecmo_known"] = known
        return known

    @pre_load
    def _unknown_members(self, data: Any, **kwargs: Any) -> Any:
        if type(data) is not dict:
            return data
        known = self._known_members()
        if data.keys() <= known:
            return data
        # Counted over the few known names, not the (maybe 100,000) members.
        unknown = len(data) - sum(name in data for name in known)
        budget = _budget.get() or [MAX_LISTED_ERRORS]
        listed = min(unknown, max(budget[0], 0))
        budget[0] -= listed
        if listed == unknown:
            return data  # marshmallow lists them (RAISE) and validates the known fields
        first = islice((k for k in data if k not in known), listed)
        messages: dict[Any, Any] = {k: [self.error_messages["unknown"]] for k in first}
        messages[OMITTED] = unknown - listed
        raise ValidationError(messages)


class BoundedList(fields.List):  # type: ignore[type-arg]
    """fields.List that refuses more than max_items before deserialising any item."""

    def __init__(self, cls_or_instance: Any, *, max_items: int, **kwargs: Any) -> None:
        super().__init__(cls_or_instance, **kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list) and len(value) > self.max_items:
            raise ValidationError(f"Longer than maximum length {self.max_items}.")
        return super()._deserialize(value, attr, data, **kwargs)
