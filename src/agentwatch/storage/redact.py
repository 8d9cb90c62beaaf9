"""Keep secrets out of storage and logs.

Two complementary rules, both pure functions without side effects:

* **By key.** In a JSON-like value (``tool_args``, ``attributes``) the value under a key
  that names a secret (``password``, ``api_key``, ``Authorization``, ``clientSecret``,
  ``AWS_SECRET_ACCESS_KEY``, …) is replaced by ``"[REDACTED]"``. Keys are compared by
  their words, case-insensitively, with ``-``/``_``/``.``/space/camelCase all splitting
  words, so ``author`` or ``max_tokens`` are left alone while ``x-api-key`` is not. A key
  whose last word only describes the secret (``secret_name``, ``token_type``,
  ``password_path``, …) is not a secret.
* **By shape.** Anywhere in any string, substrings that look like credentials are replaced
  by ``"[REDACTED:<kind>]"``: AWS access key ids, ``Bearer`` tokens, JWTs, PEM private key
  blocks, GitHub/GitLab/Slack/OpenAI-style/Stripe/Google API tokens, ``key=value`` or
  ``key: value`` pairs and ``--key value`` flags whose key names a secret, and the password
  of URLs with ``user:password@``.

>>> redact_value({"url": "https://bob:hunter2@db.example/x", "password": "hunter2", "n": 3})
{'url': 'https://bob:[REDACTED:url_password]@db.example/x', 'password': '[REDACTED]', 'n': 3}
>>> redact_text("curl -H 'Authorization: Bearer abcdef0123456789'")
"curl -H 'Authorization: Bearer [REDACTED:bearer_token]'"
>>> redact_dsn("https://default:s3cret@ch.example:8443/agentwatch")
'https://default:[REDACTED]@ch.example:8443/agentwatch'

Redaction is best effort by nature: it catches well-known token formats and secrets
under telling names, not a password pasted into free prose.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[REDACTED]"

__all__ = [
    "REDACTED",
    "is_secret_key",
    "may_contain_secret",
    "redact_dsn",
    "redact_text",
    "redact_value",
]

# --- keys ------------------------------------------------------------------------------

# Single words that name a secret wherever they stand in a key.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "apikey",
        "auth",
        "authorization",
        "authentication",
        "credential",
        "credentials",
        "creds",
        "cookie",
        "cookies",
        "privatekey",
        "accesskey",
        "secretkey",
        "sessionkey",
        "accesstoken",
        "authtoken",
        "refreshtoken",
        "bearer",
        "jwt",
        "signature",
        "otp",
    }
)
# Two-word sequences that name a secret (``api_key``, ``private-key``, ``set-cookie``, …).
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("private", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("session", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("client", "key"),
        ("ssh", "key"),
        ("set", "cookie"),
    }
)
# A last word that only describes the secret: ``secret_name``, ``token_type``, ``password_path``.
_DESCRIPTIVE_SUFFIXES = frozenset(
    {
        "name",
        "names",
        "id",
        "ids",
        "type",
        "kind",
        "count",
        "len",
        "length",
        "size",
        "expires",
        "expiry",
        "expiration",
        "ttl",
        "path",
        "file",
        "env",
        "var",
        "ref",
        "arn",
        "version",
        "policy",
        "provider",
        "required",
        "enabled",
        "mode",
        "method",
        "scheme",
        "algorithm",
        "url",
        "uri",
        "endpoint",
    }
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=8192)
def is_secret_key(key: str) -> bool:
    """Whether ``key`` names a secret (``api_key``, ``X-Auth-Token``, ``clientSecret``, …).

    >>> [is_secret_key(k) for k in ("apiKey", "Authorization", "author", "secret_name")]
    [True, True, False, False]
    """
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
    if not words:
        return False
    if words[-1] in _DESCRIPTIVE_SUFFIXES and len(words) > 1:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words)):
        return True
    # ``x_api_key`` spelled without separators: ``xapikey``, ``myaccesstoken``.
    joined = "".join(words)
    return any(
        joined.endswith(w) for w in ("apikey", "accesstoken", "authtoken", "secretkey", "password")
    )


# --- shapes inside strings -------------------------------------------------------------

_B64URL = r"[A-Za-z0-9_\-]"
# (kind, pattern) in the order they are tried; the first kind matching at a position wins.
_SHAPES: tuple[tuple[str, str], ...] = (
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    ),
    ("url_password", r"(?<=[A-Za-z0-9+.\-]://)[^\s/?#@:\"'<>]*:[^\s/?#\"'<>]*@"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"),
    ("jwt", rf"\beyJ{_B64URL}{{6,}}\.{_B64URL}{{6,}}\.{_B64URL}*"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("api_key", r"\bsk-[A-Za-z0-9_\-]{20,}|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google_api_key", r"\bAIza[A-Za-z0-9_\-]{35,}"),
    (
        "bearer_token",
        r"\b(?i:bearer)[ \t]+(?=[A-Za-z0-9._~+/=\-]*[0-9._~+/=\-])[A-Za-z0-9._~+/=\-]{8,}",
    ),
)
_SHAPE_RE = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _SHAPES), re.DOTALL)

# ``key=value``, ``key: value``, ``"key": "value"``, ``--key value``: a key and its
# separator; the key is checked with is_secret_key, the value is matched after it.
_KEY_SEP_RE = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>-{0,2}[A-Za-z][A-Za-z0-9_.\-]{0,63})"
    r"(?P<sep>[\"']?[ \t]*[:=][ \t]*(?P<quote>[\"']?))"
    r"|(?<![A-Za-z0-9_.\-])(?P<flag>--?[A-Za-z][A-Za-z0-9_.\-]{0,63})[ \t]+(?=[^\s\-])"
)
_VALUE_RE = re.compile(r"(?:(?i:bearer|basic|token|digest)[ \t]+)?[^\s\"'&;,}<>]+")
_QUOTED_VALUE_RE = {q: re.compile(rf"[^{q}\n]+") for q in ("'", '"')}
# Cheap pre-check, run on the lower-cased text: a string that matches none of these needs
# no further work. Factored by first letter, it is several times faster than the patterns.
_MAYBE_RE = re.compile(
    r"p(?:ass|wd)|s(?:ecret|ig|ession|k[-_])|token|key|c(?:red|ookie)|bearer|jwt|otp"
    r"|a(?:uth|kia|sia|gpa|ida|roa|ipa|npa|nva|bia|cca|iza)|eyj|rk_"
    r"|g(?:h[pousr]_|ithub_pat_|lpat-)|xox[abposr]-|-----begin|://[^\s/@]*@"
)


def may_contain_secret(text: str) -> bool:
    """A fast necessary condition for :func:`redact_text` or :func:`redact_value` to
    change ``text`` (or a JSON value whose encoding is ``text``)."""
    return _MAYBE_RE.search(text.lower()) is not None


def _shape_sub(match: re.Match[str]) -> str:
    kind = match.lastgroup or "secret"
    if kind == "url_password":
        user = match.group(0).split(":", 1)[0]
        return f"{user}:[REDACTED:url_password]@"
    if kind == "bearer_token":
        scheme = match.group(0).split(None, 1)[0]
        return f"{scheme} [REDACTED:bearer_token]"
    return f"[REDACTED:{kind}]"


def _redact_pairs(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _KEY_SEP_RE.finditer(text):
        if m.start() < pos:
            continue
        key = m.group("key") or m.group("flag")
        if not is_secret_key(key.lstrip("-")):
            continue
        quote = m.group("quote")
        value_re = _QUOTED_VALUE_RE[quote] if quote else _VALUE_RE
        vm = value_re.match(text, m.end())
        if vm is None or "[REDACTED" in vm.group(0):
            continue
        parts = vm.group(0).split(None, 1)
        scheme = f"{parts[0]} " if len(parts) == 2 and not quote else ""
        out.append(text[pos : m.end()])
        out.append(f"{scheme}[REDACTED:secret_param]")
        pos = vm.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped substring replaced by ``[REDACTED:<kind>]``."""
    if not text or _MAYBE_RE.search(text.lower()) is None:
        return text
    return _redact_pairs(_SHAPE_RE.sub(_shape_sub, text))


def _redact_under_secret_key(value: Any) -> Any:
    # None, booleans and empty values reveal nothing; everything else is hidden whole.
    if value is None or isinstance(value, bool) or value in ("", [], {}):
        return value
    return REDACTED


def redact_value(obj: Any) -> Any:
    """A copy of JSON-like ``obj`` with secrets replaced; ``obj`` itself is not changed.

    Values under secret-looking keys become ``"[REDACTED]"`` (whole sub-trees included);
    strings anywhere are passed through :func:`redact_text`. Unchanged sub-trees are
    returned as they are (not copied).
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        changed = False
        for key, value in obj.items():
            if isinstance(key, str) and is_secret_key(key):
                new = _redact_under_secret_key(value)
            else:
                new = redact_value(value)
            changed = changed or new is not value
            out[key] = new
        return out if changed or not isinstance(obj, dict) else obj
    if isinstance(obj, (list, tuple)):
        items = [redact_value(v) for v in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return items if isinstance(obj, list) else tuple(items)
    return obj


def redact_dsn(dsn: str) -> str:
    """``dsn`` fit for a log line: the password and secret query parameters hidden."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return redact_text(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = _redact_pairs(parts.query).replace("[REDACTED:secret_param]", REDACTED)
    if netloc == parts.netloc and query == parts.query:
        return dsn
    out = f"{parts.scheme}://{netloc}{parts.path}"
    if query:
        out += f"?{query}"
    if parts.fragment:
        out += f"#{parts.fragment}"
    return out
