"""Journal lines: the direct encoding of the usual record is exactly ``json.dumps``'s."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job import journal

COMPACT = dict(ensure_ascii=False, separators=(",", ":"))


def record(**changes):
    base = {"input": "a/b.txt", "output": "a/b.txt", "status": "ok", "bytes_in": 12,
            "tokens": 3, "seconds": 0.00125, "attempts": 1, "error": None,
            "mtime_ns": 1732500000123456789}
    return {**base, **changes}


@pytest.mark.parametrize("changes", [
    {},
    {"input": 'quo"te\\back\tslash\x00\x1f\u2028 日本語.txt', "output": None},
    {"status": "failed", "error": "ValueError: bad \"input\"\n at x.py:3", "tokens": None},
    {"status": "skipped", "seconds": 0.0, "bytes_in": None, "mtime_ns": None},
    {"seconds": 1e-07}, {"seconds": 12345678.5},
    {"tokens": {"custom": [1, 2]}},          # a processor's own value: json.dumps itself
    {"tokens": True}, {"seconds": 3}, {"seconds": float("inf")}, {"status": "o\"k"},
])
def test_usual_and_unusual_records(changes):
    value = record(**changes)
    assert journal.encode_record(value) == json.dumps(value, **COMPACT)


def test_other_keys_or_order():
    value = {"status": "ok", **record()}
    assert journal.encode_record(value) == json.dumps(value, **COMPACT)
    assert journal.encode_record({"input": "x"}) == '{"input":"x"}'


@settings(max_examples=200, deadline=None)
@given(name=st.text(), error=st.none() | st.text(), tokens=st.none() | st.integers(),
       seconds=st.floats(allow_nan=False, allow_infinity=False, min_value=0))
def test_any_text_and_numbers(name, error, tokens, seconds):
    value = record(input=name, output=name, error=error, tokens=tokens, seconds=seconds)
    line = journal.encode_record(value)
    assert line == json.dumps(value, **COMPACT) and json.loads(line) == value
