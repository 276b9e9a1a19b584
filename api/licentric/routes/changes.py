"""Update bodies: a field left out is unchanged, a field sent as null is
cleared. The api update functions take null for "unchanged" and a `clear`
list naming the fields to set to null (SQL decides which may be cleared)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# ISO 8601 durations as the API takes them: P1Y, P1M, P14D, PT10M, P1DT12H, P2W.
Duration = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$",
        description="An ISO 8601 duration, e.g. P1M, P1Y, P14D, PT10M.",
        examples=["P1M"],
    ),
]

# A Postgres integer: anything wider would not match the SQL function at all.
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


def update_args(data: msgspec.Struct, *, clearable: bool = True) -> dict[str, Any]:
    """The named arguments of an api update function for an update body (with
    `clear` unless the function has no nullable field to clear)."""
    fields = {name: getattr(data, name) for name in data.__struct_fields__}
    args = {name: value for name, value in fields.items() if value is not msgspec.UNSET and value is not None}
    if not clearable:
        return args
    return {**args, "clear": [name for name, value in fields.items() if value is None]}
