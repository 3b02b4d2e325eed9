"""The front door's form decoding gives exactly what urllib's parse_qsl gives."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.slack import shapes

CASES = [
    "a=1&&b=2", "a", "a=", "=b", "a=%2B", "a=%2b+c", "a=%26%3D", "a=%zz", "a=%", "a=%4",
    "a=%ff", "a=%C3%A9", "a=é", "a=%E2%82", "a=1;b=2", "a=%25", "a=%2525", "a==b", "a=b=c",
    "a=%00", "a=☃%20x", "a=%F0%9F%98%80", "%61=b", "a+b=c+d", "a=1&a=2", "", "&", "%",
]  # fmt: skip


def _urllib(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True))


@pytest.mark.parametrize("raw", CASES)
def test_form_matches_parse_qsl(raw: str) -> None:
    assert shapes.form(raw) == _urllib(raw)


def test_form_matches_parse_qsl_on_random_bodies() -> None:
    rng = random.Random(16)
    alphabet = "ab=&+%25AFzé☃ \x00;0123456789abcdef"
    for _ in range(20_000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert shapes.form(raw) == _urllib(raw), raw


def test_form_decodes_a_view_submission() -> None:
    payload = {"type": "view_submission", "view": {"state": {"values": {"s": {"s": {
        "type": "plain_text_input", "value": "C++ & 50% = \"quoted\" é ☃ 😀 a+b",
    }}}}}}  # fmt: skip
    raw = urlencode({"payload": json.dumps(payload)})
    assert shapes.form(raw) == _urllib(raw)
    assert json.loads(shapes.form(raw)["payload"]) == payload
    plain = urlencode({"payload": json.dumps({"type": "view_submission", "v": "x y"})})
    assert shapes.form(plain) == _urllib(plain)
