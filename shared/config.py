"""One settings object, read once at start-up and passed down.

Sources, weakest first: built-in defaults, `config.yaml` (or the file named by CONFIG_FILE),
`.env`, then the process environment. A bad value stops start-up with a message naming the variable.

Each variable is declared once, as a field of `Settings` (its name upper-cased is the variable) with
its parser and its doc (`setting(...)`); VARIABLES is derived from the fields. Values that have a
structure are parsed once, when the settings are made, into typed values the rest of the code takes:
`mysql` (MYSQL_DSN), `keys` (API_KEYS), `queue_target` (QUEUE_REDIS_URL or REDIS_URL) and `s3`
(UPLOAD_STORE); the text fields keep the values as written.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


# -- parsers: (variable name, raw text) -> value; errors name the variable ---------------------------
Parser = Callable[[str, str], Any]


def _text(name: str, raw: str) -> str:
    return raw


def _stripped(name: str, raw: str) -> str:
    return raw.strip()


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


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw}")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {raw!r}")
    return level


def _redis_url(name: str, raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(f"{name} must look like redis://host:port/db, got {raw!r}")
    return raw


def _redis_url_or_empty(name: str, raw: str) -> str:
    """An optional Redis: empty means REDIS_URL's."""
    return _redis_url(name, raw) if raw.strip() else ""


def _entries(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list, each entry stripped, empty ones dropped (parsed in Settings)."""
    return tuple(entry.strip() for entry in raw.split(",") if entry.strip())


_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


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


def _phone_region(name: str, raw: str) -> str:
    import phonenumbers

    region = raw.strip().upper()
    if region and region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError(f"{name} must be a country's two-letter code (ISO 3166) such as GB or DE, got {raw!r}")
    return region


# -- typed values ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MySQLConfig:
    host: str
    port: int
    user: str
    password: str
    database: str


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


HASHED_KEY_PREFIX = "sha256:"
_KEY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")


def digest_of(key: str) -> bytes:
    """The SHA-256 of a key as the gateway compares it. surrogateescape: aiohttp decodes header bytes
    that are not UTF-8 that way; any bytes hash."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class ApiKey:
    """One API_KEYS entry: its name and the SHA-256 of the key; `plain` is the key itself when it was
    configured in clear (None for a `sha256:` entry, whose key this process never knows)."""

    name: str
    digest: bytes = field(repr=False)
    plain: str | None = field(default=None, repr=False)

    @property
    def hashed(self) -> bool:
        return self.plain is None


def parse_api_key(entry: str, position: int) -> ApiKey:
    """One API_KEYS entry: `name=key`, or a bare key named `key<position>`. The key is plain or
    `sha256:<64 hex digits>`. A bare key may end in `=` (base64 padding); any other `=` must follow a
    name. Errors name the entry by position, never quoting a key."""
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
    if key[: len(HASHED_KEY_PREFIX)].lower() == HASHED_KEY_PREFIX:
        hexdigits = key[len(HASHED_KEY_PREFIX) :]
        if not _SHA256_HEX.fullmatch(hexdigits):
            raise SettingsError(f"{where} ({name}): a hashed key is 'sha256:' and 64 hex digits")
        return ApiKey(name, bytes.fromhex(hexdigits))
    return ApiKey(name, digest_of(key), key)


def parse_api_keys(entries: tuple[str, ...]) -> tuple[ApiKey, ...]:
    """The keys of API_KEYS's entries; names must be unique."""
    keys = tuple(parse_api_key(entry, position) for position, entry in enumerate(entries, 1))
    seen: set[str] = set()
    for key in keys:
        if key.name in seen:
            raise SettingsError(f"API_KEYS: two keys are named {key.name!r}; names must be unique")
        seen.add(key.name)
    return keys


@dataclass(frozen=True)
class SentinelAddress:
    """QUEUE_REDIS_URL=redis+sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None = field(repr=False)


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


@dataclass(frozen=True)
class RedisTarget:
    """The queue's Redis: a plain one (`url`, redis:// rediss:// or unix://), or a Sentinel-managed
    primary (`sentinel`; `url` is then the redis+sentinel:// URL as written)."""

    url: str
    sentinel: SentinelAddress | None = None


def parse_queue_target(name: str, raw: str) -> RedisTarget:
    if raw.startswith(f"{SENTINEL_SCHEME}:"):
        return RedisTarget(raw, parse_sentinel_url(name, raw))
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(f"{name} must look like redis://host:port/db or {_SENTINEL_FORM}, got {raw!r}")
    return RedisTarget(raw)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    """UPLOAD_STORE=s3://bucket[/prefix]: uploads are objects `<prefix>/<job>.<kind>` in the bucket."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __str__(self) -> str:
        return self.url


def parse_s3_location(name: str, raw: str) -> S3Location:
    parts = urlsplit(raw.strip())
    if parts.scheme != "s3":
        raise SettingsError(f"{name} must be empty (uploads in UPLOAD_DIR) or s3://bucket/prefix, got {raw!r}")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise SettingsError(
            f"{name} must name an S3 bucket (3-63 lower-case letters, digits, '.' or '-') after s3://, got {raw!r}"
        )
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} takes no query or fragment, got {raw!r}")
    return S3Location(parts.netloc, parts.path.strip("/"))


# -- the settings ------------------------------------------------------------------------------------
def setting(default: Any, parse: Parser, doc: str, *, secret: bool = False) -> Any:
    """A field of Settings that is an environment variable (its name upper-cased): its default, the
    parser of its text, and what it means. A secret one is left out of the settings' repr."""
    return field(default=default, repr=not secret, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    mysql_dsn: str = setting(
        "mysql://root:@127.0.0.1:3306/customers", _text, "the database; created if missing, migrated at start-up"
    )
    redis_url: str = setting("redis://127.0.0.1:6379/0", _redis_url, "the Redis of the cache and the job queue")
    redis_prefix: str = setting("", _text, "prefix of every key (and of the arq queue name), to share a Redis")
    # Scaling out (docs/scaling.md): empty means REDIS_URL; see cache_url / queue_url.
    cache_redis_url: str = setting(
        "",
        _redis_url_or_empty,
        "the cache's Redis (empty: REDIS_URL); with CACHE_REDIS_CLUSTER, any node of a Redis Cluster",
    )
    cache_redis_cluster: bool = setting(False, _bool, "true: CACHE_REDIS_URL names a Redis Cluster")
    queue_redis_url: str = setting(
        "",
        _stripped,
        "the queue's Redis (arq jobs, job events, rate limits; empty: REDIS_URL): redis://..., or a "
        f"Sentinel-managed primary {_SENTINEL_FORM}",
    )
    port: int = setting(8080, _port, "where the gateway listens")
    host: str = setting("0.0.0.0", _text, "the address the gateway listens on")
    api_keys: tuple[str, ...] = setting(
        (),
        _entries,
        "comma-separated keys, each name=key or bare, plain or sha256:<hex>; empty: the API is open",
        secret=True,
    )
    upload_dir: str = setting(
        "uploads",
        _text,
        "where uploads are stored (shared by the gateway and every worker); with UPLOAD_STORE, each "
        "process's own scratch directory",
    )
    max_upload_mb: int = setting(200, _positive_int, "larger uploads are refused with 413")
    max_inflated_mb: int = setting(4096, _positive_int, "zip-bomb guard: a workbook's inflated size")
    max_zip_ratio: int = setting(200, _positive_int, "zip-bomb guard: a workbook part's compression ratio")
    import_batch_size: int = setting(2000, _positive_int, "rows per committed batch (and per checkpoint)")
    cache_ttl_s: int = setting(300, _positive_int, "TTL of cached customers and list pages")
    import_warm_max_rows: int = setting(
        100_000, _non_negative_int, "customers one import run puts in the cache; beyond, reads fill it (0: none)"
    )
    workers: int = setting(2, _positive_int, "worker processes deploy/run.sh starts")
    gateway_processes: int = setting(1, _positive_int, "gateway processes deploy/run.sh starts on one port")
    worker_concurrency: int = setting(2, _positive_int, "imports one worker process runs at once")
    reader_memory_budget_mb: int = setting(768, _positive_int, "memory a workbook's reader may hold")
    max_errors_per_job: int = setting(
        1000, _positive_int, "rows per job whose errors (and cells, for the rejected rows) are stored"
    )
    job_lease_s: int = setting(30, _positive_int, "how long a silent worker keeps a job before another takes it")
    sweep_interval_s: int = setting(10, _positive_int, "how often workers look for jobs nobody is working on")
    fanout_min_rows: int = setting(
        500_000,
        _positive_int,
        "a job whose sheet holds at least this many data rows (the reader's estimate) is split into "
        "FANOUT_PARTS parts that several workers import at once",
    )
    fanout_parts: int = setting(2, _positive_int, "how many parts such a job is split into; 1 never splits")
    history_retention_days: int = setting(
        0, _non_negative_int, "customer history older than this is deleted by the workers' sweep; 0 keeps it all"
    )
    log_level: str = setting("INFO", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL (logs are JSON)")
    mysql_pool_size: int = setting(10, _positive_int, "MySQL connections per process")
    import_bulk_load: bool = setting(True, _bool, "load batches with LOAD DATA LOCAL INFILE (falls back by itself)")
    import_history: bool = setting(
        True, _bool, "imports record each change in the customers' history (false: none, and no revert)"
    )
    db_timeout_s: int = setting(5, _positive_int, "how long a request waits for MySQL before answering 503")
    access_log_reads: bool = setting(False, _bool, "log every successful read too (writes and errors always are)")
    preview_ttl_s: int = setting(3600, _positive_int, "a preview not started within this expires")
    sse_keepalive_s: int = setting(15, _positive_int, "seconds between keep-alive comments on /jobs/{id}/events")
    webhook_secret: str = setting("", _text, "the HMAC-SHA256 key of X-Signature-256 (none: unsigned)", secret=True)
    webhook_max_attempts: int = setting(5, _positive_int, "delivery attempts before a webhook is given up")
    webhook_backoff_s: float = setting(2.0, _positive_float, "the first retry's delay, doubling each time")
    webhook_timeout_s: float = setting(10.0, _positive_float, "how long one attempt waits for the receiver")
    webhook_allow_private: bool = setting(
        False, _bool, "accept callback URLs on loopback or private addresses (metadata ones stay refused)"
    )
    rate_limit_per_min: int = setting(600, _non_negative_int, "requests a minute per API key or address; 0: none")
    upload_rate_limit_per_min: int = setting(30, _non_negative_int, "uploads a minute per API key or address; 0: none")
    max_concurrent_uploads: int = setting(8, _positive_int, "uploads one gateway process receives at once")
    max_rows_per_job: int = setting(2_000_000, _positive_int, "data rows one file may hold")
    phone_default_region: str = setting(
        "",
        _phone_region,
        "imports write phones in international format (libphonenumber), reading a number without a country "
        "code as this country's (GB, DE, US, ...); empty: phones are stored as written",
    )
    prometheus_multiproc_dir: str = setting("", _text, "prometheus_client's multiprocess folder (several processes)")
    worker_metrics_port: int = setting(9101, _port_or_off, "where each worker serves /metrics; 0: off")
    # Uploads on S3-compatible object storage (shared/infra/storage.py): empty keeps them in UPLOAD_DIR.
    upload_store: str = setting("", _stripped, "empty: uploads in UPLOAD_DIR; s3://bucket/prefix: in that bucket")
    s3_endpoint_url: str = setting("", _http_url, "the S3-compatible server (empty: AWS S3)")
    s3_region: str = setting("", _region, "the bucket's region (empty: the SDK's default)")
    s3_access_key_id: str = setting("", _text, "S3 credentials, with S3_SECRET_ACCESS_KEY, or neither", secret=True)
    s3_secret_access_key: str = setting("", _text, "S3 credentials, with S3_ACCESS_KEY_ID, or neither", secret=True)
    # Typed values, parsed once from the text fields above (dataclasses.replace parses them again).
    mysql: MySQLConfig = field(init=False, repr=False)
    keys: tuple[ApiKey, ...] = field(init=False, repr=False)
    queue_target: RedisTarget = field(init=False, repr=False)
    s3: S3Location | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mysql", parse_mysql_dsn(self.mysql_dsn))
        object.__setattr__(self, "keys", parse_api_keys(self.api_keys))
        queue_variable = "QUEUE_REDIS_URL" if self.queue_redis_url else "REDIS_URL"
        object.__setattr__(self, "queue_target", parse_queue_target(queue_variable, self.queue_url))
        s3 = parse_s3_location("UPLOAD_STORE", self.upload_store) if self.upload_store.strip() else None
        object.__setattr__(self, "s3", s3)
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


@dataclass(frozen=True)
class Variable:
    """An environment variable: the Settings field it sets, its parser and what it means."""

    name: str
    attr: str
    parse: Parser
    doc: str
    default: Any


# Every variable, in the order Settings declares them (derived: nothing to keep in step by hand).
VARIABLES: dict[str, Variable] = {
    f.name.upper(): Variable(f.name.upper(), f.name, f.metadata["parse"], f.metadata["doc"], f.default)
    for f in fields(Settings)
    if "parse" in f.metadata
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
    merged.update({k: v for k, v in env.items() if k in VARIABLES})
    return Settings(**{v.attr: v.parse(name, merged[name]) for name, v in VARIABLES.items() if name in merged})
