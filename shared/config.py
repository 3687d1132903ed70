"""One settings object, read once at start-up and passed down.

Sources, weakest first: built-in defaults, `config.yaml` (or the file named by CONFIG_FILE),
`.env`, then the process environment. A bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class MySQLConfig:
    host: str
    port: int
    user: str
    password: str
    database: str


@dataclass(frozen=True)
class Settings:
    mysql_dsn: str = "mysql://root:@127.0.0.1:3306/customers"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = ""
    # Scaling out (docs/scaling.md): empty means REDIS_URL; see cache_url / queue_url.
    cache_redis_url: str = ""
    cache_redis_cluster: bool = False
    queue_redis_url: str = ""
    port: int = 8080
    host: str = "0.0.0.0"
    api_keys: tuple[str, ...] = ()
    upload_dir: str = "uploads"
    max_upload_mb: int = 200
    max_inflated_mb: int = 4096
    max_zip_ratio: int = 200
    import_batch_size: int = 2000
    cache_ttl_s: int = 300
    workers: int = 2
    gateway_processes: int = 1
    worker_concurrency: int = 2
    reader_memory_budget_mb: int = 768
    max_errors_per_job: int = 1000
    job_lease_s: int = 30
    sweep_interval_s: int = 10
    # A job whose sheet holds at least this many data rows (the reader's estimate) is split into
    # FANOUT_PARTS parts that several workers import at once (docs/scaling.md).
    fanout_min_rows: int = 500_000
    fanout_parts: int = 2
    # Customer history older than this many days is deleted by the workers' sweep; 0 keeps it all.
    history_retention_days: int = 0
    log_level: str = "INFO"
    mysql_pool_size: int = 10
    import_bulk_load: bool = True
    db_timeout_s: int = 5
    access_log_reads: bool = False
    preview_ttl_s: int = 3600
    sse_keepalive_s: int = 15
    webhook_secret: str = ""
    webhook_max_attempts: int = 5
    webhook_backoff_s: float = 2.0
    webhook_timeout_s: float = 10.0
    webhook_allow_private: bool = False
    rate_limit_per_min: int = 600
    upload_rate_limit_per_min: int = 30
    max_concurrent_uploads: int = 8
    max_rows_per_job: int = 2_000_000
    prometheus_multiproc_dir: str = ""
    worker_metrics_port: int = 9101
    # Uploads on S3-compatible object storage (shared/infra/storage.py): empty keeps them in UPLOAD_DIR.
    upload_store: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = field(default="", repr=False)
    s3_secret_access_key: str = field(default="", repr=False)
    mysql: MySQLConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mysql", parse_mysql_dsn(self.mysql_dsn))
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise SettingsError(
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together: set both, or neither (then the standard "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profile or instance role are used)"
            )
        if self.cache_redis_cluster and urlsplit(self.cache_url).scheme not in ("redis", "rediss"):
            source = "CACHE_REDIS_URL" if self.cache_redis_url else "REDIS_URL (CACHE_REDIS_URL is not set)"
            raise SettingsError(
                f"CACHE_REDIS_CLUSTER=true needs {source} to name a cluster node as redis://host:port, "
                f"got {self.cache_url!r}"
            )

    @property
    def cache_url(self) -> str:
        """The Redis (or, with cache_redis_cluster, any node of the Redis Cluster) of the cache."""
        return self.cache_redis_url or self.redis_url

    @property
    def queue_url(self) -> str:
        """The Redis of the arq queue, job events and rate limits: redis:// or redis+sentinel://."""
        return self.queue_redis_url or self.redis_url

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def queue_name(self) -> str:
        return f"{self.redis_prefix}arq:queue"


def parse_mysql_dsn(dsn: str) -> MySQLConfig:
    parts = urlsplit(dsn)
    if parts.scheme not in ("mysql", "mariadb", "mysql+aiomysql"):
        raise SettingsError(f"MYSQL_DSN must look like mysql://user:password@host:port/database, got {dsn!r}")
    database = parts.path.lstrip("/")
    if not database or not database.replace("_", "").replace("-", "").isalnum():
        raise SettingsError(f"MYSQL_DSN must name a database (letters, digits, _ or -), got {dsn!r}")
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise SettingsError(f"MYSQL_DSN has a bad port: {exc}") from None
    return MySQLConfig(
        host=parts.hostname or "127.0.0.1",
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database,
    )


# variable name -> (field name, parser)
def _whole_number(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _positive_int(name: str, raw: str) -> int:
    value = _whole_number(name, raw)
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {value}")
    return value


def _port(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _non_negative_int(name: str, raw: str) -> int:
    value = _whole_number(name, raw)
    if value < 0:
        raise SettingsError(f"{name} must be 0 (off) or more, got {value}")
    return value


def _port_or_off(name: str, raw: str) -> int:
    value = _non_negative_int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name} must be a TCP port (1-65535) or 0 (off), got {value}")
    return value


HASHED_KEY_PREFIX = "sha256:"
_KEY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")


def split_api_key(entry: str, position: int) -> tuple[str, str]:
    """(name, key) of one API_KEYS entry: `name=key`, or a bare key named `key<position>`. The key is
    plain or `sha256:<64 hex digits>`. A bare key may end in `=` (base64 padding); any other `=`
    must follow a name. Errors name the entry by position, never quoting a key."""
    where = f"API_KEYS entry {position}"
    name, key = f"key{position}", entry
    if "=" in entry.rstrip("="):
        name, _, key = entry.partition("=")
        name = name.strip()
        if not _KEY_NAME.fullmatch(name):
            raise SettingsError(
                f"{where}: the name before '=' must be letters, digits, '_', '.' or '-' (starting with a letter, "
                "at most 64)"
            )
        key = key.strip()
    if not key:
        raise SettingsError(f"{where} ({name}) has no key after the name")
    if key[: len(HASHED_KEY_PREFIX)].lower() == HASHED_KEY_PREFIX and not _SHA256_HEX.fullmatch(
        key[len(HASHED_KEY_PREFIX) :]
    ):
        raise SettingsError(f"{where} ({name}): a hashed key is 'sha256:' and 64 hex digits")
    return name, key


def _keys(name: str, raw: str) -> tuple[str, ...]:
    entries = tuple(k.strip() for k in raw.split(",") if k.strip())
    seen: set[str] = set()
    for position, entry in enumerate(entries, 1):
        key_name, _ = split_api_key(entry, position)
        if key_name in seen:
            raise SettingsError(f"{name}: two keys are named {key_name!r}; names must be unique")
        seen.add(key_name)
    return entries


def _redis_url(name: str, raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(f"{name} must look like redis://host:port/db, got {raw!r}")
    return raw


@dataclass(frozen=True)
class SentinelAddress:
    """QUEUE_REDIS_URL=redis+sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None


SENTINEL_SCHEME = "redis+sentinel"
_SENTINEL_FORM = "redis+sentinel://[password@]host:port[,host:port...]/master-name[/db]"


def parse_sentinel_url(name: str, raw: str) -> SentinelAddress:
    """The sentinels, master name and database of a redis+sentinel:// URL; errors name the variable."""
    scheme, sep, rest = raw.partition("://")
    if scheme != SENTINEL_SCHEME or not sep:
        raise SettingsError(f"{name} must look like {_SENTINEL_FORM}, got {raw!r}")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username, colon, password = userinfo.partition(":")
    if not colon:
        username, password = "", userinfo
    sentinels: list[tuple[str, int]] = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise SettingsError(f"{name}: each sentinel must be host:port, got {entry!r} in {raw!r}")
        sentinels.append((host.strip("[]"), int(port)))
    master, _, db = path.partition("/")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", master):
        raise SettingsError(f"{name} must name the master after the hosts ({_SENTINEL_FORM}), got {raw!r}")
    db = db.strip("/")
    if db and not db.isdigit():
        raise SettingsError(f"{name}: the database after the master name must be a number, got {db!r}")
    return SentinelAddress(
        sentinels=tuple(sentinels),
        master=master,
        db=int(db or 0),
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def _queue_url(name: str, raw: str) -> str:
    if raw.startswith(f"{SENTINEL_SCHEME}:"):
        parse_sentinel_url(name, raw)
        return raw
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(f"{name} must look like redis://host:port/db or {_SENTINEL_FORM}, got {raw!r}")
    return raw


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {raw!r}")
    return level


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _text(name: str, raw: str) -> str:
    return raw


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def _upload_store(name: str, raw: str) -> str:
    """Empty (uploads in UPLOAD_DIR) or s3://bucket[/prefix]."""
    raw = raw.strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme != "s3":
        raise SettingsError(f"{name} must be empty (uploads in UPLOAD_DIR) or s3://bucket/prefix, got {raw!r}")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise SettingsError(
            f"{name} must name an S3 bucket (3-63 lower-case letters, digits, '.' or '-') after s3://, got {raw!r}"
        )
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} takes no query or fragment, got {raw!r}")
    return raw


def _http_url(name: str, raw: str) -> str:
    raw = raw.strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise SettingsError(f"{name} has a bad port, got {raw!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must look like https://host[:port], got {raw!r}")
    return raw


def _region(name: str, raw: str) -> str:
    raw = raw.strip()
    if raw and not _REGION.fullmatch(raw):
        raise SettingsError(f"{name} must be a region name such as us-east-1, got {raw!r}")
    return raw


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw}")
    return value


_VARIABLES: dict[str, tuple[str, Any]] = {
    "MYSQL_DSN": ("mysql_dsn", _text),
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_PREFIX": ("redis_prefix", _text),
    "CACHE_REDIS_URL": ("cache_redis_url", _redis_url),
    "CACHE_REDIS_CLUSTER": ("cache_redis_cluster", _bool),
    "QUEUE_REDIS_URL": ("queue_redis_url", _queue_url),
    "PORT": ("port", _port),
    "HOST": ("host", _text),
    "API_KEYS": ("api_keys", _keys),
    "UPLOAD_DIR": ("upload_dir", _text),
    "MAX_UPLOAD_MB": ("max_upload_mb", _positive_int),
    "MAX_INFLATED_MB": ("max_inflated_mb", _positive_int),
    "MAX_ZIP_RATIO": ("max_zip_ratio", _positive_int),
    "IMPORT_BATCH_SIZE": ("import_batch_size", _positive_int),
    "CACHE_TTL_S": ("cache_ttl_s", _positive_int),
    "WORKERS": ("workers", _positive_int),
    "GATEWAY_PROCESSES": ("gateway_processes", _positive_int),
    "WORKER_CONCURRENCY": ("worker_concurrency", _positive_int),
    "READER_MEMORY_BUDGET_MB": ("reader_memory_budget_mb", _positive_int),
    "MAX_ERRORS_PER_JOB": ("max_errors_per_job", _positive_int),
    "JOB_LEASE_S": ("job_lease_s", _positive_int),
    "SWEEP_INTERVAL_S": ("sweep_interval_s", _positive_int),
    "FANOUT_MIN_ROWS": ("fanout_min_rows", _positive_int),
    "FANOUT_PARTS": ("fanout_parts", _positive_int),
    "HISTORY_RETENTION_DAYS": ("history_retention_days", _non_negative_int),
    "LOG_LEVEL": ("log_level", _log_level),
    "MYSQL_POOL_SIZE": ("mysql_pool_size", _positive_int),
    "IMPORT_BULK_LOAD": ("import_bulk_load", _bool),
    "DB_TIMEOUT_S": ("db_timeout_s", _positive_int),
    "ACCESS_LOG_READS": ("access_log_reads", _bool),
    "PREVIEW_TTL_S": ("preview_ttl_s", _positive_int),
    "SSE_KEEPALIVE_S": ("sse_keepalive_s", _positive_int),
    "WEBHOOK_SECRET": ("webhook_secret", _text),
    "WEBHOOK_MAX_ATTEMPTS": ("webhook_max_attempts", _positive_int),
    "WEBHOOK_BACKOFF_S": ("webhook_backoff_s", _positive_float),
    "WEBHOOK_TIMEOUT_S": ("webhook_timeout_s", _positive_float),
    "WEBHOOK_ALLOW_PRIVATE": ("webhook_allow_private", _bool),
    "RATE_LIMIT_PER_MIN": ("rate_limit_per_min", _non_negative_int),
    "UPLOAD_RATE_LIMIT_PER_MIN": ("upload_rate_limit_per_min", _non_negative_int),
    "MAX_CONCURRENT_UPLOADS": ("max_concurrent_uploads", _positive_int),
    "MAX_ROWS_PER_JOB": ("max_rows_per_job", _positive_int),
    "PROMETHEUS_MULTIPROC_DIR": ("prometheus_multiproc_dir", _text),
    "WORKER_METRICS_PORT": ("worker_metrics_port", _port_or_off),
    "UPLOAD_STORE": ("upload_store", _upload_store),
    "S3_ENDPOINT_URL": ("s3_endpoint_url", _http_url),
    "S3_REGION": ("s3_region", _region),
    "S3_ACCESS_KEY_ID": ("s3_access_key_id", _text),
    "S3_SECRET_ACCESS_KEY": ("s3_secret_access_key", _text),
}


def _read_yaml(path: Path) -> dict[str, str]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a mapping of VARIABLE: value")
    return {str(k).upper(): "" if v is None else str(v) for k, v in data.items()}


def _read_dotenv(path: Path) -> dict[str, str]:
    """python-dotenv's reading of `.env`: `export` lines, quotes, escapes in double quotes, and a ` #`
    comment after an unquoted value (`API_KEYS=k # prod` is `k`). No `${VAR}` expansion: values are
    taken as written."""
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    for key, value in dotenv_values(path, interpolate=False, encoding="utf-8").items():
        if value is None:
            raise SettingsError(f"{path}: {key!r} has no value: expected VARIABLE=value")
        values[key.strip().upper()] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the settings once: defaults < config.yaml < .env < environment."""
    env = dict(os.environ if environ is None else environ)
    base = cwd or Path.cwd()
    merged: dict[str, str] = {}
    config_file = env.get("CONFIG_FILE")
    yaml_path = Path(config_file) if config_file else base / "config.yaml"
    if config_file and not yaml_path.is_file():
        raise SettingsError(f"CONFIG_FILE names {config_file!r}, which does not exist")
    if yaml_path.is_file():
        merged.update(_read_yaml(yaml_path))
    dotenv = base / ".env"
    if dotenv.is_file():
        merged.update(_read_dotenv(dotenv))
    merged.update({k: v for k, v in env.items() if k in _VARIABLES})

    kwargs: dict[str, Any] = {}
    for name, (attr, parse) in _VARIABLES.items():
        if name in merged:
            kwargs[attr] = parse(name, merged[name])
    return Settings(**kwargs)
