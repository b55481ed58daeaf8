"""The two ways a handler says it could not handle a message.

Raise `Transient` for a failure worth retrying (evhost delivers the message
again, with backoff, up to the plugin's `max_attempts`), and `Permanent` for a
message that can never succeed (evhost dead-letters it at once). Any other
exception escaping a handler is a crash: the component traps and the message
is dead-lettered as `trap` (see `crash`).
"""


class HandlerError(Exception):
    """A handler's failure; its text lands in the log and in `Evhost-Error`."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = str(message)

    def __str__(self) -> str:
        return self.message


class Transient(HandlerError):
    """It may work if tried again later: evhost retries with backoff."""


class Permanent(HandlerError):
    """It will never work: evhost dead-letters the message at once."""
