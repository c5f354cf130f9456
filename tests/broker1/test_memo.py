"""The hot-path memos: same text or same object → no repeated work; failures never remembered."""

import pytest

from authbroker import broker1
from authbroker.broker1.memo import MAX_MEMO_TEXT_CHARS, IdentityMemo, TextMemo
from authbroker.errors import BrokerProtocolError


def counting(fn):
    calls = []

    def wrapped(arg):
        calls.append(arg)
        return fn(arg)

    return wrapped, calls


def test_text_memo_parses_each_text_once_and_keeps_kinds_apart():
    memo: TextMemo[object] = TextMemo()
    parse, calls = counting(lambda text: object())
    first = memo.get("a", "{}", parse)
    assert memo.get("a", "{}", parse) is first
    assert memo.get("b", "{}", parse) is not first
    assert len(calls) == 2


def test_malformed_text_raises_every_time():
    memo: TextMemo[broker1.Request] = TextMemo()
    parse, calls = counting(lambda text: broker1.parse_request(broker1.Method.GET_ACCOUNTS, text))
    for _ in range(2):
        with pytest.raises(BrokerProtocolError):
            memo.get(broker1.Method.GET_ACCOUNTS, "{", parse)
    assert len(calls) == 2


def test_long_texts_are_not_remembered_and_the_table_is_bounded():
    memo: TextMemo[str] = TextMemo(entries=4)
    parse, calls = counting(str.upper)
    long_text = "x" * (MAX_MEMO_TEXT_CHARS + 1)
    memo.get(0, long_text, parse)
    memo.get(0, long_text, parse)
    assert len(calls) == 2
    for i in range(10):
        memo.get(0, str(i), parse)
    assert len(memo._table) == 4


def test_identity_memo_answers_only_for_the_very_same_object():
    memo: IdentityMemo[str] = IdentityMemo()
    make, calls = counting(lambda obj: f"text {len(calls)}")
    a, b = broker1.OkResult(), broker1.OkResult()  # equal, but not the same object
    assert memo.get(a, make) == memo.get(a, make)
    memo.get(b, make)
    assert len(calls) == 2
