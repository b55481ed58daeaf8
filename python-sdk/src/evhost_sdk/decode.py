"""Decoding a JSON payload into the type a handler asks for.

A handler's first parameter says what it wants: a dataclass (its fields typed
with `str`, `int`, `float`, `bool`, `list[T]`, `dict[str, T]`, `Optional[T]`,
`Any` or another dataclass), `dict`, `list`, `Any` (any JSON value), `bytes`
(the raw payload) or `Message` (the whole delivery). Like serde in the Rust
SDK, unknown fields are ignored, missing fields without a default fail, and a
value of the wrong JSON type fails (`bool` is not an `int`, `1.5` is not an
`int`). An exception raised by a dataclass's `__post_init__` (a validation)
fails the decoding too. Every failure is a `DecodeError` naming where.
"""

import dataclasses
import functools
import json
import types
import typing
from typing import Any

# `X | Y` unions (Python 3.10 and later).
_UNION_TYPE = getattr(types, "UnionType", None)


class DecodeError(ValueError):
    """The payload does not have the shape the handler asked for."""


def decode_payload(payload: bytes, target: Any) -> Any:
    """`payload` as JSON, decoded into `target`."""
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise DecodeError(f"not JSON: {err}") from None
    return decode_value(value, target, "")


def type_name(target: Any) -> str:
    """How a decode error names `target`."""
    return getattr(target, "__name__", None) or str(target).replace("typing.", "")


def decode_value(value: Any, target: Any, path: str) -> Any:
    """`value` (decoded JSON) checked against and converted to `target`."""
    where = f" at {path}" if path else ""
    if target is Any or target is typing.Any or target is object:
        return value
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if origin is typing.Union or _is_union_type(target):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode_value(value, arg, path)
            except DecodeError as err:
                errors.append(str(err))
        raise DecodeError("; ".join(errors) or f"invalid value{where}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise DecodeError(f"expected one of {list(args)}{where}, found {_describe(value)}")
    if origin in (list, typing.List):
        if not isinstance(value, list):
            raise DecodeError(f"expected a list{where}, found {_describe(value)}")
        item = args[0] if args else Any
        return [decode_value(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise DecodeError(f"expected an object{where}, found {_describe(value)}")
        item = args[1] if len(args) == 2 else Any
        return {k: decode_value(v, item, _join(path, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return _decode_dataclass(value, target, path)
    if target is bool:
        if isinstance(value, bool):
            return value
        raise DecodeError(f"expected a boolean{where}, found {_describe(value)}")
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise DecodeError(f"expected an integer{where}, found {_describe(value)}")
    if target is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise DecodeError(f"expected a number{where}, found {_describe(value)}")
    if target is str:
        if isinstance(value, str):
            return value
        raise DecodeError(f"expected a string{where}, found {_describe(value)}")
    if target is dict:
        if isinstance(value, dict):
            return value
        raise DecodeError(f"expected an object{where}, found {_describe(value)}")
    if target is list:
        if isinstance(value, list):
            return value
        raise DecodeError(f"expected a list{where}, found {_describe(value)}")
    if target is type(None):
        if value is None:
            return None
        raise DecodeError(f"expected null{where}, found {_describe(value)}")
    raise TypeError(f"evhost_sdk cannot decode a payload into {type_name(target)}")


def _decode_dataclass(value: Any, target: type, path: str) -> Any:
    where = f" at {path}" if path else ""
    if not isinstance(value, dict):
        raise DecodeError(f"expected an object for {target.__name__}{where}, found {_describe(value)}")
    kwargs = {}
    for name, hint, required in _fields_of(target):
        if name in value:
            kwargs[name] = decode_value(value[name], hint, _join(path, name))
        elif required:
            raise DecodeError(f"missing field '{name}'{where}")
    try:
        return target(**kwargs)
    except (ValueError, TypeError) as err:
        raise DecodeError(f"{target.__name__}{where}: {err}") from None


@functools.lru_cache(maxsize=None)
def _fields_of(target: type) -> tuple:
    """The fields `__init__` takes, each as (name, type, required): worked
    out once per dataclass (`typing.get_type_hints` is slow, and a handler
    decodes the same classes for every message)."""
    hints = typing.get_type_hints(target)
    return tuple(
        (
            field.name,
            hints.get(field.name, Any),
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(target)
        if field.init
    )


def _is_union_type(target: Any) -> bool:
    return _UNION_TYPE is not None and isinstance(target, _UNION_TYPE)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {json.dumps(value)[:60]}"
    if isinstance(value, list):
        return "a list"
    return "an object"
