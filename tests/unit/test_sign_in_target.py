"""After signing in, a person goes back where they were: a path of this site, never
another site however the address is dressed up."""

import pytest

from ledgerflow.auth.pages import _local


@pytest.mark.parametrize(
    ("asked", "went"),
    [
        ("/rejected?reason=invalid_json", "/rejected?reason=invalid_json"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.test/", "/"),
        ("/\\evil.test", "/"),
        ("/\t/evil.test", "/"),
        ("/\n/evil.test", "/"),
        ("https://evil.test/", "/"),
        ("javascript:alert(1)", "/"),
        ("rejected", "/"),
    ],
)
def test_only_a_path_of_this_site_is_followed(asked: str | None, went: str) -> None:
    assert _local(asked) == went
