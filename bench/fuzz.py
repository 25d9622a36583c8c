"""Hostile requests against a running service, counted by status code: none may be a 5xx.

    python -m bench.fuzz --url http://127.0.0.1:3000 [--n 1200] [--seed 0] [--key KEY]

Each request is drawn from families an attacker tries first: bodies that break JSON
parsers (deep nesting, integer literals past Python's 4,300 digits, NaN and huge floats,
lone surrogates, invalid UTF-8, truncation), well-formed bodies with wrong types, extreme
numbers, over-long text and lists, ids with control characters, forged feedback tokens
and positions, oversize bodies, wrong methods and unknown routes. Not part of
``make bench`` (it measures nothing); tests/test_serving_fuzz.py runs it on the live service.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

POSTS = ("/search", "/recommend", "/rank", "/intent", "/feedback")
GETS = ("/health", "/ready", "/metrics", "/service-metrics", "/openapi.json", "/ui", "/")
FIELDS = ("query", "user_id", "k", "filters", "explain", "context", "item_ids", "exclude_seen",
          "request_id", "item_id", "event", "position", "feedback_token")  # fmt: skip


def _value(rng: random.Random) -> object:
    """A JSON value of any type, often an extreme one."""
    return rng.choice(
        [
            None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**20, 10**300, 1e308, -1e-308, 0.5,
            "", " ", "tent", "\n", "x" * rng.choice([129, 257, 5000]), "item_000001", "r_1\n", "u\u0000",
            "\u202e\u0645", "🏕" * 50, [], [1], ["item_000001"] * 3, {}, {"a": 1}, [[[[[]]]]],
        ]
    )  # fmt: skip


def _raw(rng: random.Random) -> bytes:
    """A body whose bytes are the attack."""
    depth = rng.choice([9, 100, 5000, 30000])
    return rng.choice(
        [
            b"[" * depth + b"]" * depth,
            b'{"query": ' + b'{"a": ' * depth + b"1" + b"}" * (depth + 1),
            b'{"query": "tent", "k": ' + b"9" * rng.choice([40, 4301, 20000]) + b"}",
            b'{"query": "tent", "k": -' + b"1" * 5000 + b"}",
            b'{"query": "\\ud800"}',
            b'{"query": "tent\\udfff", "user_id": "u"}',
            b'{"\\udbff": "tent"}',
            b'{"query": "tent", "filters": {"price_max": NaN}}',
            b'{"query": "tent", "filters": {"price_min": -Infinity}}',
            b'{"query": "tent", "filters": {"price_max": 1e99999}}',
            b'{"query": "\xff\xfe\xfd"}',
            b"\xef\xbb\xbf{}",
            b'{"query": "tent"',
            b"",
            b"null",
            b'"tent"',
            b"x" * 70000,
            bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))),
        ]
    )


def _body(rng: random.Random) -> bytes:
    """A well-formed JSON object with random fields and hostile values."""
    body = {rng.choice(FIELDS): _value(rng) for _ in range(rng.randint(0, 6))}
    if rng.random() < 0.5:
        body.setdefault("query", "tent")
    if rng.random() < 0.2:
        body["item_ids"] = [f"item_{rng.randint(0, 10**6):06d}" for _ in range(rng.choice([2, 1001, 3000]))]
    return json.dumps(body).encode()


def _feedback(rng: random.Random) -> bytes:
    """A click with a forged token, position or id."""
    body = {
        "request_id": rng.choice(["r_" + "0" * 32, "r_1\n", "r_" + "f" * 200, "r 1"]),
        "item_id": rng.choice(["item_000001", "item_000002\n", "nope"]),
        "event": rng.choice(["click", "purchase", "view"]),
        "feedback_token": rng.choice(["1.AAAA", "999999999.x", "", "x" * 80, "1." + "A" * 22]),
        "position": rng.choice([None, 0, -1, 1, 10**20, 2**63]),
    }
    return json.dumps(body).encode()


def fuzz(url: str, n: int = 1200, seed: int = 0, key: str | None = None) -> Counter[int]:
    """Send ``n`` hostile requests to the service at ``url``; the count of each status code."""
    rng = random.Random(seed)
    parts = urlsplit(url)
    makers: list[Callable[[random.Random], bytes]] = [_raw, _body, _body, _feedback]
    counts: Counter[int] = Counter()
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    for _ in range(n):
        headers = {
            "Content-Type": rng.choice(
                ["application/json", "text/plain", "application/x-www-form-urlencoded"]
            )
        }
        if key:
            headers["X-API-Key"] = key
        kind = rng.random()
        if kind < 0.85:
            method, path, body = "POST", rng.choice(POSTS), rng.choice(makers)(rng)
        elif kind < 0.95:
            method, path, body = rng.choice(["GET", "PUT", "DELETE", "PATCH"]), rng.choice(POSTS + GETS), b""
        else:
            method, path, body = (
                "POST",
                rng.choice(["/nope", "/search/", "//search", "/%00", "/" + "a" * 3000]),
                b"{}",
            )
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            counts[resp.status] += 1
        except (http.client.HTTPException, OSError):  # a dropped connection: counted, then a new one
            counts[0] += 1
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    conn.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", default=None)
    args = parser.parse_args(argv)
    counts = fuzz(args.url, args.n, args.seed, args.key)
    print(json.dumps({str(k): v for k, v in sorted(counts.items())}))
    return 1 if any(code >= 500 or code == 0 for code in counts) else 0


if __name__ == "__main__":
    sys.exit(main())
