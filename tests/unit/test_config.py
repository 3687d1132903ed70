import dataclasses
import hashlib
from pathlib import Path

import pytest

from shared.config import (
    VARIABLES,
    ApiKey,
    RedisTarget,
    S3Location,
    SentinelAddress,
    Settings,
    SettingsError,
    load_settings,
)
from shared.infra.redis_clients import sentinel_address
from shared.infra.storage import S3UploadStore, UploadStore, open_store


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({}, cwd=tmp_path)
    assert s.port == 8080
    assert s.max_upload_mb == 200
    assert s.cache_ttl_s == 300
    assert s.workers == 2
    assert s.api_keys == ()
    assert s.mysql.database == "customers"
    assert (s.fanout_min_rows, s.fanout_parts) == (500_000, 2)
    s = load_settings({"FANOUT_MIN_ROWS": "1000", "FANOUT_PARTS": "8"}, cwd=tmp_path)
    assert (s.fanout_min_rows, s.fanout_parts) == (1000, 8)


def test_environment_wins_over_files(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("PORT: 9000\nCACHE_TTL_S: 60\nAPI_KEYS: a,b\n")
    (tmp_path / ".env").write_text("PORT=9100\n")
    s = load_settings({"PORT": "9200"}, cwd=tmp_path)
    assert s.port == 9200
    assert s.cache_ttl_s == 60
    assert s.api_keys == ("a", "b")


def test_dsn_is_parsed(tmp_path: Path) -> None:
    s = load_settings({"MYSQL_DSN": "mysql://app:s%40cret@db.local:3307/shop"}, cwd=tmp_path)
    assert (s.mysql.host, s.mysql.port, s.mysql.user, s.mysql.password, s.mysql.database) == (
        "db.local",
        3307,
        "app",
        "s@cret",
        "shop",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("MAX_UPLOAD_MB", "0"),
        ("CACHE_TTL_S", "-5"),
        ("MYSQL_DSN", "postgres://x@y/z"),
        ("MYSQL_DSN", "mysql://root@localhost"),
        ("REDIS_URL", "http://localhost"),
        ("LOG_LEVEL", "LOUD"),
        ("WORKERS", "two"),
        ("FANOUT_PARTS", "0"),
        ("FANOUT_MIN_ROWS", "many"),
    ],
)
def test_bad_value_names_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, cwd=tmp_path)


def test_bad_value_stops_the_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    for module in ("gateway", "worker"):
        result = subprocess.run(
            [sys.executable, "-m", module],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "PORT": "nope"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert "PORT must be a whole number" in result.stderr


def test_limit_settings(tmp_path: Path) -> None:
    s = load_settings({}, cwd=tmp_path)
    assert (s.rate_limit_per_min, s.upload_rate_limit_per_min) == (600, 30)
    assert (s.max_concurrent_uploads, s.max_rows_per_job) == (8, 2_000_000)
    s = load_settings(
        {"RATE_LIMIT_PER_MIN": "0", "UPLOAD_RATE_LIMIT_PER_MIN": "5", "MAX_CONCURRENT_UPLOADS": "2"}, cwd=tmp_path
    )
    assert (s.rate_limit_per_min, s.upload_rate_limit_per_min, s.max_concurrent_uploads) == (0, 5, 2)
    for name, value in [
        ("RATE_LIMIT_PER_MIN", "-1"),
        ("UPLOAD_RATE_LIMIT_PER_MIN", "lots"),
        ("MAX_CONCURRENT_UPLOADS", "0"),
        ("MAX_ROWS_PER_JOB", "0"),
    ]:
        with pytest.raises(SettingsError, match=name):
            load_settings({name: value}, cwd=tmp_path)


# -- each variable declared once; structured values parsed once into typed values ---------------------
def test_the_variables_are_the_settings_fields_each_with_its_parser_and_doc() -> None:
    settable = [f.name for f in dataclasses.fields(Settings) if f.init]
    assert list(VARIABLES) == [name.upper() for name in settable]
    for name, variable in VARIABLES.items():
        assert variable.attr == name.lower() and callable(variable.parse), name
        assert len(variable.doc) > 10, f"{name} has no doc"


def test_every_default_reads_back_from_its_own_text(tmp_path: Path) -> None:
    """A default written out as text parses to itself: each variable's parser is its field's."""
    as_text = {
        name: ",".join(v.default) if isinstance(v.default, tuple) else str(v.default) for name, v in VARIABLES.items()
    }
    assert load_settings(as_text, cwd=tmp_path) == Settings()


def test_api_keys_are_parsed_once_into_named_keys_hashed_or_plain(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"ops-secret").hexdigest()
    s = load_settings({"API_KEYS": f"ci=k1, ops=sha256:{hashed.upper()} ,bare-key"}, cwd=tmp_path)
    assert s.api_keys == ("ci=k1", f"ops=sha256:{hashed.upper()}", "bare-key")  # as written
    assert s.keys == (
        ApiKey("ci", hashlib.sha256(b"k1").digest(), "k1"),
        ApiKey("ops", bytes.fromhex(hashed)),
        ApiKey("key3", hashlib.sha256(b"bare-key").digest(), "bare-key"),
    )
    assert [k.hashed for k in s.keys] == [False, True, False]
    assert "k1" not in repr(s) and "bare-key" not in repr(s.keys)
    assert load_settings({}, cwd=tmp_path).keys == ()
    # Settings made in code (tests, dataclasses.replace) are parsed the same way.
    assert [k.name for k in dataclasses.replace(s, api_keys=("x=1", "2")).keys] == ["x", "key2"]
    with pytest.raises(SettingsError, match="two keys are named 'x'"):
        dataclasses.replace(s, api_keys=("x=1", "x=2"))


def test_the_queue_redis_is_parsed_once_into_a_target(tmp_path: Path) -> None:
    plain = load_settings({"REDIS_URL": "redis://10.0.0.3:6379/1"}, cwd=tmp_path)
    assert plain.queue_target == RedisTarget("redis://10.0.0.3:6379/1")
    assert sentinel_address(plain) is None
    s = load_settings({"QUEUE_REDIS_URL": "redis+sentinel://:pw%40x@s1:26379,[::1]:26380/mymaster/2"}, cwd=tmp_path)
    address = SentinelAddress((("s1", 26379), ("::1", 26380)), "mymaster", 2, None, "pw@x")
    assert s.queue_target.sentinel == address
    assert sentinel_address(s) is s.queue_target.sentinel  # the users take the parsed value
    assert "pw@x" not in repr(s.queue_target)
    for raw, fragment in [
        ("redis+sentinel://s1/mymaster", "each sentinel must be host:port"),
        ("redis+sentinel://s1:26379", "must name the master"),
        ("http://queue:6379", "must look like redis://"),
    ]:
        with pytest.raises(SettingsError, match="QUEUE_REDIS_URL") as caught:
            load_settings({"QUEUE_REDIS_URL": raw}, cwd=tmp_path)
        assert fragment in str(caught.value)


def test_the_upload_store_is_parsed_once_into_a_bucket_and_prefix(tmp_path: Path) -> None:
    local = load_settings({"UPLOAD_DIR": str(tmp_path)}, cwd=tmp_path)
    assert local.s3 is None and type(open_store(local)) is UploadStore
    s = load_settings({"UPLOAD_STORE": " s3://my-bucket/a/b/ ", "UPLOAD_DIR": str(tmp_path)}, cwd=tmp_path)
    assert s.s3 == S3Location("my-bucket", "a/b") and s.s3.url == "s3://my-bucket/a/b"
    store = open_store(s)
    assert isinstance(store, S3UploadStore) and store.key_for("j", "csv") == "a/b/j.csv"
    assert load_settings({"UPLOAD_STORE": "s3://top"}, cwd=tmp_path).s3 == S3Location("top")
    for raw in ("file:///tmp/x", "s3://Bad_Bucket/x", "s3://bucket/x?y=1"):
        with pytest.raises(SettingsError, match="UPLOAD_STORE"):
            load_settings({"UPLOAD_STORE": raw}, cwd=tmp_path)


def test_phone_default_region(tmp_path: Path) -> None:
    assert load_settings({}, cwd=tmp_path).phone_default_region == ""
    assert load_settings({"PHONE_DEFAULT_REGION": " gb "}, cwd=tmp_path).phone_default_region == "GB"
    with pytest.raises(SettingsError, match="PHONE_DEFAULT_REGION"):
        load_settings({"PHONE_DEFAULT_REGION": "England"}, cwd=tmp_path)
