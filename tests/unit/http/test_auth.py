"""API keys: how API_KEYS entries are named, hashed and checked (gateway/http/auth.py); no server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.http import auth
from shared.config import SettingsError, load_settings, parse_api_keys
from tests.support.api import CI_KEY, KEYS, OPS_KEY


def test_api_keys_are_named_hashed_or_numbered(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"ops-secret").hexdigest()
    s = load_settings({"API_KEYS": f" ci=k1 , ops=sha256:{hashed.upper()}, plain-key,YWJjZA== "}, cwd=tmp_path)
    assert s.api_keys == ("ci=k1", f"ops=sha256:{hashed.upper()}", "plain-key", "YWJjZA==")
    ring = auth.KeyRing(s.keys)
    assert [key.name for key in ring.keys] == ["ci", "ops", "key3", "key4"]
    assert ring.identify("k1") == "ci"
    assert ring.identify("ops-secret") == "ops"
    assert ring.identify("plain-key") == "key3"
    assert ring.identify("YWJjZA==") == "key4"  # base64 padding is part of a bare key
    assert ring.identify(f"sha256:{hashed}") is None  # the hash is not the key
    assert ring.identify("k2") is None and ring.identify("") is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("ci=topsecret1,ci=topsecret2", "two keys are named 'ci'"),
        ("key2=topsecret1,topsecret2", "two keys are named 'key2'"),
        ("ops=sha256:abc123", "64 hex digits"),
        ("sha256:" + "g" * 64, "64 hex digits"),
        ("bad name=topsecret", "the name before '='"),
        ("=topsecret", "the name before '='"),
    ],
)
def test_bad_api_keys_stop_start_up_without_quoting_a_key(tmp_path: Path, raw: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match="API_KEYS") as caught:
        load_settings({"API_KEYS": raw}, cwd=tmp_path)
    assert fragment in str(caught.value)
    assert "topsecret" not in str(caught.value)


def test_a_key_is_compared_with_every_configured_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    ring = auth.KeyRing(parse_api_keys(KEYS))
    for supplied in (CI_KEY, OPS_KEY, "wrong"):
        calls.clear()
        ring.identify(supplied)
        # Hashed once, compared (as digests of one length) with every key: no early exit.
        assert len(calls) == len(KEYS)
        assert {a for a, _ in calls} == {hashlib.sha256(supplied.encode()).digest()}
