"""Random keys drawn once and stored: the order of a worklist, the opaque key of an expert's item."""
from __future__ import annotations

import secrets

_rng = secrets.SystemRandom()


def new_order_key() -> int:
    """A worklist position drawn at assignment and stored (never recomputed from a seed at query time): the list
    sorts by it. From the system's randomness, so nobody can predict the order from the code."""
    return _rng.randrange(1, 2**62)


def new_key() -> str:
    """Lower-case hex: opaque, unguessable, and unable to spell a pseudonym or a code by chance."""
    return secrets.token_hex(8)


def choice(options):
    """A random tie-break (routing, panels) from the system's randomness."""
    return _rng.choice(options)


def shuffled(items) -> list:
    out = list(items)
    _rng.shuffle(out)
    return out
