"""Object-key validation: traversal, absolute paths and odd characters never reach the store."""

from __future__ import annotations

import pytest

from operators.storage.keys import ObjectKeyError, check_key, check_prefix


@pytest.mark.parametrize(
    "key",
    ["incidents/42/terrain.npy", "a", "runs/manual__2026-11-26T19_30_00+00_00/out.tif", "x/y=1/z@2.json"],
)
def test_plain_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../secret",
        "a/../../b",
        "a/./b",
        "a//b",
        "a/",
        "with space",
        "tab\there",
        "new\nline",
        "nul\x00",
        "semi;colon",
        "$(reboot)",
        "`id`",
        "quote'",
        'dq"',
        "back\\slash",
        "x" * 1025,
    ],
)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ObjectKeyError):
        check_key(key)


def test_prefixes() -> None:
    assert check_prefix("") == ""
    assert check_prefix("incidents/42/") == "incidents/42/"
    with pytest.raises(ObjectKeyError):
        check_prefix("../")
