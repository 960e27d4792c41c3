"""Randomness the server draws once and stores: worklist order keys, opaque item keys, tie-breaks and shuffles.
From the operating system's generator, so that nobody can predict them from the code or a seed."""
from __future__ import annotations

import secrets

system_random = secrets.SystemRandom()


def new_order_key() -> int:
    """A worklist position drawn at assignment and stored (never recomputed from a seed at query time): the list
    sorts by it."""
    return system_random.randrange(1, 2**62)


def new_key() -> str:
    """Lower-case hex: opaque, unguessable, and unable to spell a pseudonym or a code by chance."""
    return secrets.token_hex(8)
