from pathlib import Path

import pytest

from shared.config import SettingsError, load_settings


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
