"""Logging to the host's log, tagged with the plugin and the message.

`evhost_sdk.log.info("charged order %s", order_id)` formats like the standard
`logging` module (`%` arguments), and only when the host records that level.
Plain `print` works too: stdout and stderr lines land in the host's log.
"""

from typing import Any, Dict

_enabled: Dict[str, bool] = {}


def _level(name: str) -> Any:
    from wit_world.imports import host

    return getattr(host.Level, name)


def enabled(level: str) -> bool:
    """Whether a line at `level` (`"trace"`, `"debug"`, `"info"`, `"warn"`,
    `"error"`) would be recorded; asked of the host once per level."""
    name = level.upper()
    if name not in _enabled:
        from wit_world.imports import host

        _enabled[name] = host.log_enabled(_level(name))
    return _enabled[name]


def _log(level: str, message: str, args: tuple) -> None:
    if not enabled(level):
        return
    from wit_world.imports import host

    host.log(_level(level), message % args if args else str(message))


def trace(message: str, *args: Any) -> None:
    """Logs at `trace`."""
    _log("TRACE", message, args)


def debug(message: str, *args: Any) -> None:
    """Logs at `debug`."""
    _log("DEBUG", message, args)


def info(message: str, *args: Any) -> None:
    """Logs at `info`."""
    _log("INFO", message, args)


def warn(message: str, *args: Any) -> None:
    """Logs at `warn`."""
    _log("WARN", message, args)


def error(message: str, *args: Any) -> None:
    """Logs at `error`."""
    _log("ERROR", message, args)
