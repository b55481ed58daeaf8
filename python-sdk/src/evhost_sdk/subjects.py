"""NATS subject patterns: `*` matches one token, `>` the rest."""


def matches(pattern: str, subject: str) -> bool:
    """Whether `subject` is matched by `pattern`."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have):
            return False
        if token != "*" and token != have[i]:
            return False
    return len(want) == len(have)
