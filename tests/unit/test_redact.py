"""Secrets are replaced by key and by shape; everything else is left exactly as it was."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from agentwatch.storage.redact import (
    _SECRET_PAIRS,
    _SECRET_WORDS,
    REDACTED,
    is_secret_key,
    may_contain_secret,
    redact_dsn,
    redact_text,
    redact_value,
)

GH = "ghp_" + "a1B2c3D4e5" * 4
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "db-passwd",
        "pwd",
        "passphrase",
        "secret",
        "client_secret",
        "clientSecret",
        "token",
        "access_token",
        "accessToken",
        "refresh-token",
        "X-Auth-Token",
        "api_key",
        "api-key",
        "apiKey",
        "APIKEY",
        "x_api_key",
        "X-API-KEY",
        "authorization",
        "Authorization",
        "Proxy-Authorization",
        "auth",
        "credentials",
        "aws_credential",
        "private_key",
        "privateKey",
        "access_key",
        "AWS_SECRET_ACCESS_KEY",
        "session_key",
        "cookie",
        "Set-Cookie",
        "ssh.key",
        "signing key",
        "jwt",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authority",
        "keyboard",
        "key",
        "monkey",
        "tokens_in",
        "max_tokens",
        "token_count",
        "token_type",
        "secret_name",
        "password_path",
        "api_key_id",
        "passenger",
        "compass",
        "session_id",
        "url",
        "",
        "_",
    ],
)
def test_benign_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_every_secret_word_passes_the_fast_precheck() -> None:
    # The writer skips redaction of a tool_args JSON text that fails may_contain_secret:
    # every key is_secret_key accepts must pass it.
    for word in _SECRET_WORDS:
        assert may_contain_secret(f'{{"{word}": 1}}'), word
    for a, b in _SECRET_PAIRS:
        assert may_contain_secret(f'{{"{a}_{b}": 1}}'), (a, b)
        assert may_contain_secret(f'{{"{a.title()}{b.title()}": 1}}'), (a, b)


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key id AKIAIOSFODNN7EXAMPLE here", "key id [REDACTED:aws_access_key_id] here"),
        ("ASIAY34FZKBOKMUTVV7A", "[REDACTED:aws_access_key_id]"),
        (
            "Authorization: Bearer abc.DEF-123_xyz~+/=",
            "Authorization: Bearer [REDACTED:bearer_token]",
        ),
        ("curl -H 'authorization: bearer 0123456789abcdef'", None),
        (f"token {JWT} end", "token [REDACTED:jwt] end"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAA\n-----END RSA PRIVATE KEY-----\nok",
            "[REDACTED:private_key]\nok",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r", "[REDACTED:private_key]"),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx\n-----END PGP PRIVATE KEY BLOCK-----",
            "[REDACTED:private_key]",
        ),
        (
            f"git push https://{GH}@github.com/o/r",
            "git push https://[REDACTED:github_token]@github.com/o/r",
        ),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[REDACTED:github_token]"),
        ("glpat-abcdefghij0123456789", "[REDACTED:gitlab_token]"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "[REDACTED:slack_token]"),
        ("xoxp-1234567890-abc", "[REDACTED:slack_token]"),
        ("OPENAI=sk-proj-abcdefghijklmnopqrstuvwxyz012345", None),
        ("use sk-abcdefghijklmnopqrstuvwxyz0123 now", "use [REDACTED:api_key] now"),
        ("stripe sk_live_abcdefghijklmnop1234", "stripe [REDACTED:api_key]"),
        ("AIzaSyA-abcdefghijklmnopqrstuvwxyz012345", "[REDACTED:google_api_key]"),
        (
            "postgres://app:p@ss:w0rd@db.internal:5432/prod?sslmode=require",
            "postgres://app:[REDACTED:url_password]@db.internal:5432/prod?sslmode=require",
        ),
        (
            "see https://user:pw@example.com/a and https://example.com/b",
            "see https://user:[REDACTED:url_password]@example.com/a and https://example.com/b",
        ),
        ("https://x-access-token:tok@github.com", None),
        ("password=hunter2&user=bob", "password=[REDACTED:secret_param]&user=bob"),
        ("Password: hunter2", "Password: [REDACTED:secret_param]"),
        ('{"api_key": "abc def", "n": 1}', '{"api_key": "[REDACTED:secret_param]", "n": 1}'),
        ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", None),
        ("mysql --password hunter2 -u root", "mysql --password [REDACTED:secret_param] -u root"),
        ("mysql --password=hunter2", "mysql --password=[REDACTED:secret_param]"),
        ("a=password=x", "a=password=[REDACTED:secret_param]"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED:secret_param]"),
        ("https://s3/x?X-Amz-Signature=abc123&X-Amz-Date=1", None),
        ("Cookie: sessionid=abc123; theme=dark", None),
    ],
)
def test_secret_shapes_redacted(text: str, expected: str | None) -> None:
    out = redact_text(text)
    if expected is not None:
        assert out == expected
    assert "[REDACTED:" in out


@pytest.mark.parametrize(
    "secret_text",
    [
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
        "OPENAI=sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "https://x-access-token:tok@github.com",
        "https://s3/x?X-Amz-Signature=abc123&X-Amz-Date=1",
        "Cookie: sessionid=abc123; theme=dark",
        "curl -H 'authorization: bearer 0123456789abcdef'",
    ],
)
def test_secret_value_gone(secret_text: str) -> None:
    out = redact_text(secret_text)
    for secret in ("wJalrXUtnFEMI", "abcdefghijklmnop", ":tok@", "abc123", "0123456789abcdef"):
        if secret in secret_text:
            assert secret not in out, out


@pytest.mark.parametrize(
    "text",
    [
        "",
        "weather in Paris tomorrow",
        "the token expired, password reset needed",
        "the bearer instrument",
        "author=jane max_tokens=5 tokens_in=3",
        "https://example.com/path?q=1&page=2",
        "ssh://git@github.com/org/repo.git",
        "mailto:alice@example.com",
        "host: api.example.com",
        "task-abcdefghijklmnopqrstuvwxyz",
        "SELECT count() FROM t WHERE key = 'x'",
        "monkey=banana keyboard: qwerty",
        "secret_name=prod/db token_type=bearer",
        "eyJ alone is fine",
        "AKIA_short",
    ],
)
def test_benign_text_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_redaction_is_idempotent() -> None:
    text = f"Authorization: Bearer {GH} password=x https://a:b@h {JWT}"
    once = redact_text(text)
    assert redact_text(once) == once


# --- structures ---------------------------------------------------------------------------


def test_redact_value_by_key_and_by_shape() -> None:
    args: dict[str, Any] = {
        "url": "https://bob:hunter2@db.example/x",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc123def456", "Accept": "json"},
        "credentials": {"user": "bob", "pass": "x"},
        "pin_list": [1, 2],
        "otp": 123456,
        "auth": True,
        "token": None,
        "apiKey": "",
        "items": [{"secret": "s"}, "plain", f"gh {GH}", 3, 2.5, None],
        "n": 3,
    }
    original = copy.deepcopy(args)
    out = redact_value(args)
    assert args == original  # pure
    assert out == {
        "url": "https://bob:[REDACTED:url_password]@db.example/x",
        "password": REDACTED,
        "headers": {"Authorization": REDACTED, "Accept": "json"},
        "credentials": REDACTED,
        "pin_list": [1, 2],
        "otp": REDACTED,
        "auth": True,
        "token": None,
        "apiKey": "",
        "items": [{"secret": REDACTED}, "plain", "gh [REDACTED:github_token]", 3, 2.5, None],
        "n": 3,
    }


def test_redact_value_returns_clean_values_as_they_are() -> None:
    clean = {"q": "weather", "n": [1, {"x": "y"}], "t": (1, "a")}
    assert redact_value(clean) is clean
    assert redact_value("text") == "text"
    assert redact_value(5) == 5
    assert redact_value(None) is None
    assert redact_value(("a", "password=x")) == ("a", "password=[REDACTED:secret_param]")


def test_redact_value_non_string_keys_and_scalars() -> None:
    assert redact_value({1: "Bearer abcdef123456"}) == {1: "Bearer [REDACTED:bearer_token]"}
    assert redact_value([True, 1.5]) == [True, 1.5]


# --- DSNs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "https://default:s3cret@ch.example:8443/db",
            "https://default:[REDACTED]@ch.example:8443/db",
        ),
        ("http://u:p%40ss@h:8123", "http://u:[REDACTED]@h:8123"),
        ("http://user@h:8123", "http://user@h:8123"),
        ("http://h:8123/?password=x&a=1", "http://h:8123/?password=[REDACTED]&a=1"),
        ("chdb:///var/lib/agentwatch/clickhouse", "chdb:///var/lib/agentwatch/clickhouse"),
        ("chdb://", "chdb://"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_redaction_is_fast_on_clean_text() -> None:
    text = '{"query": "weather in Paris", "page": 2, "lang": "fr", "filters": ["a", "b"]}'
    start = time.perf_counter()
    for _ in range(20_000):
        redact_text(text)
    per_call_us = (time.perf_counter() - start) / 20_000 * 1e6
    assert per_call_us < 50, per_call_us
