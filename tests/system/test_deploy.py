"""The deploy/ scripts, with real processes: the set-up of missing MariaDB/Redis (deploy/lib.sh), the
supervision in deploy/run.sh, the "Try it" block of docs/getting-started.md (and README.md) pasted as is, and
deploy/test.sh's steps.

The real MariaDB and Redis are never stopped or changed: a missing server is simulated with a PATH
that lacks its binary and an address nothing listens on; each stack gets its own database, Redis key
prefix, upload and state directories, removed at the end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
import redis as sync_redis

from shared.config import load_settings
from tests.support import docs
from tests.support.procs import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
# Just what lib.sh needs to get to its verdict; no apt-get, sudo, mariadbd, mysqld or redis-server.
BASIC_TOOLS = ("bash", "env", "dirname", "basename", "cat", "sleep", "timeout", "head")


def tool_dir(root: Path, *extra: str) -> Path:
    """A directory of symlinks to BASIC_TOOLS (and `extra`), to be the whole PATH."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in (*BASIC_TOOLS, *extra):
        found = shutil.which(name)
        assert found, f"{name} is not installed"
        (bin_dir / name).symlink_to(found)
    return bin_dir


def ensure_services(path: Path, mysql_dsn: str, redis_url: str, **env: str) -> tuple[int, str, float]:
    """Run lib.sh's ensure_services with only `path` on PATH. (status, stderr, seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(path / "bash"), "-c", "source deploy/lib.sh; ensure_services"],
        cwd=REPO,
        env={
            "PATH": str(path),
            "HOME": os.environ.get("HOME", "/root"),
            "MYSQL_DSN": mysql_dsn,
            "REDIS_URL": redis_url,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr, time.monotonic() - started


def real_dsn(database: str = "customers") -> str:
    m = load_settings(dict(os.environ)).mysql
    return f"mysql://{m.user}:{m.password}@{m.host}:{m.port}/{database}"


# ---- 1. fresh machine: missing servers ---------------------------------------------------------------


def test_missing_servers_without_apt_get_stop_at_once_with_the_install_command(tmp_path: Path) -> None:
    path = tool_dir(tmp_path)
    status, err, seconds = ensure_services(
        path, f"mysql://root:@127.0.0.1:{free_port()}/customers", f"redis://127.0.0.1:{free_port()}/0"
    )
    assert status != 0, err
    assert seconds < 5, f"took {seconds:.1f} s:\n{err}"
    assert "apt-get install -y mariadb-server redis-server" in err, err
    assert "apt-get is not available" in err, err
    assert "service mariadb start" in err, err


@pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root (sudo is deliberately not on the test's PATH)")
def test_missing_servers_are_installed_with_apt_get_and_a_failed_install_stops_at_once(tmp_path: Path) -> None:
    path = tool_dir(tmp_path)
    record = tmp_path / "apt-get.argv"
    fake = path / "apt-get"
    # Installs nothing: the script must notice that the servers are still missing.
    fake.write_text(f'#!/bin/bash\necho "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> {record}\n')
    fake.chmod(0o755)
    status, err, seconds = ensure_services(
        path, f"mysql://root:@127.0.0.1:{free_port()}/customers", f"redis://127.0.0.1:{free_port()}/0"
    )
    assert status != 0, err
    assert seconds < 5, f"took {seconds:.1f} s:\n{err}"
    assert record.read_text().splitlines() == [
        "DEBIAN_FRONTEND=noninteractive update",
        "DEBIAN_FRONTEND=noninteractive install -y mariadb-server redis-server",
    ]
    assert "installing mariadb-server redis-server with apt-get" in err, err
    assert "still no mariadbd or mysqld on PATH" in err, err


def test_an_installed_redis_that_is_not_running_is_started(tmp_path: Path) -> None:
    path = tool_dir(tmp_path, "redis-server")
    port = free_port()
    try:
        status, err, seconds = ensure_services(path, real_dsn(), f"redis://127.0.0.1:{port}/0")
        assert status == 0, err
        assert f"Redis is not answering on 127.0.0.1:{port}: starting" in err, err
        with sync_redis.Redis(host="127.0.0.1", port=port) as client:
            assert client.ping()
        assert seconds < 15, err
    finally:
        try:
            sync_redis.Redis(host="127.0.0.1", port=port).shutdown(nosave=True)
        except sync_redis.RedisError:
            pass  # not started, or the connection closed as it stopped


def test_a_refused_mysql_login_stops_at_once_saying_what_to_do(tmp_path: Path) -> None:
    path = tool_dir(tmp_path)
    m = load_settings(dict(os.environ)).mysql
    status, err, seconds = ensure_services(
        path, f"mysql://cit_nobody:wrong@{m.host}:{m.port}/customers", load_settings(dict(os.environ)).redis_url
    )
    assert status != 0, err
    assert seconds < 10, err
    assert "refuses the login of MYSQL_DSN" in err, err
    assert "Access denied" in err, err


# ---- 2./3. run.sh ------------------------------------------------------------------------------------


class StackEnv:
    """Settings of one throw-away stack; removes its database, Redis keys and processes at the end."""

    def __init__(self, root: Path) -> None:
        run = uuid.uuid4().hex[:10]
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = f"cit_{run}"
        self.prefix = f"cit:{run}:"
        self.run_dir = root / "run"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "MYSQL_DSN": real_dsn(self.database),
            "REDIS_PREFIX": self.prefix,
            "UPLOAD_DIR": str(root / "uploads"),
            "RUN_DIR": str(self.run_dir),
            "WORKERS": "1",
            "GATEWAY_PROCESSES": "1",
            "WORKER_METRICS_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("API_KEYS", None)
        self.groups: list[int] = []

    def pids(self) -> dict[str, int]:
        try:
            lines = (self.run_dir / "pids").read_text().splitlines()
        except FileNotFoundError:
            return {}
        return {name: int(pid) for name, pid in (line.split() for line in lines if line.strip())}

    def cleanup(self) -> None:
        # Whatever a failed test left running (only this stack's own programs, should the pid be reused).
        for group in self.groups:
            for pid in group_members(group):
                if "run.sh" in cmdline(pid) or str(VENV_PYTHON) in cmdline(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        settings = load_settings(dict(os.environ))
        m = settings.mysql
        conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        conn.close()
        client = sync_redis.Redis.from_url(settings.redis_url)
        keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StackEnv]:
    env = StackEnv(tmp_path)
    yield env
    env.cleanup()


def alive(pid: int) -> bool:
    """Running (a zombie, waiting to be reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    except FileNotFoundError:
        return ""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"not within {timeout} s: {what}\n{tail}")


def scrapes(url: str) -> bool:
    """A Prometheus scrape answers 200 with the text format."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and b"# TYPE " in response.read()
    except OSError:
        return False


def ready(base: str) -> bool:
    """/readyz answers 200 (a plain request: what is checked here is the scripts, not the API)."""
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.e2e
def test_run_sh_restarts_a_killed_worker_and_stops_everything_on_sigterm(stack: StackEnv, tmp_path: Path) -> None:
    log = tmp_path / "run.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(REPO / "deploy" / "run.sh")],
            cwd=REPO,
            env=stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.groups.append(proc.pid)
    try:
        wait_for(lambda: proc.poll() is not None or ready(stack.base), 90, "/readyz answers 200", log)
        assert proc.poll() is None, log.read_text()
        assert (stack.run_dir / "run.pid").read_text().strip() == str(proc.pid)
        first = stack.pids()
        assert set(first) == {"gateway", "worker-1"}, first
        assert "-m worker" in cmdline(first["worker-1"]) and "-m gateway" in cmdline(first["gateway"])

        # Metrics in multiprocess mode, a folder per kind of process under the run dir.
        metrics_dir = stack.run_dir / "metrics"
        worker_metrics = f"http://127.0.0.1:{stack.env['WORKER_METRICS_PORT']}/metrics"
        wait_for(lambda: scrapes(worker_metrics), 30, "the worker's /metrics answers", log)
        assert scrapes(stack.base + "/metrics")
        assert not (metrics_dir / "gateway").exists()  # one gateway (GATEWAY_PROCESSES=1): in memory
        assert (metrics_dir / "worker" / f"gauge_livesum_{first['worker-1']}.db").exists()

        os.kill(first["worker-1"], signal.SIGKILL)

        def restarted() -> bool:
            new = stack.pids().get("worker-1")
            return new is not None and new != first["worker-1"] and "-m worker" in cmdline(new)

        checks = 0
        deadline = time.monotonic() + 15
        while not restarted():
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            assert ready(stack.base), "the gateway stopped answering while the worker was down"
            checks += 1
            time.sleep(0.2)
        assert checks > 0
        second = stack.pids()
        assert second["gateway"] == first["gateway"] and alive(first["gateway"])
        text = log.read_text()
        assert (
            f"worker-1 (pid {first['worker-1']}) exited with status 137 (killed by SIGKILL)" in text
            and "restarting it in 1 s (restart 1)" in text
        ), text[-4000:]
        # The supervisor writes the pids file, then logs the restart: give the log line a moment.
        wait_for(
            lambda: f"worker-1 restarted: pid {second['worker-1']}" in log.read_text(), 5, "the restart logged", log
        )
        assert ready(stack.base)
        # The killed worker's live gauges were dropped (mark_process_dead); its counters stay.
        assert not (metrics_dir / "worker" / f"gauge_livesum_{first['worker-1']}.db").exists()
        assert (metrics_dir / "worker" / f"counter_{first['worker-1']}.db").exists()
        wait_for(lambda: scrapes(worker_metrics), 30, "the restarted worker's /metrics answers", log)

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(35) == 0, log.read_text()[-4000:]
        wait_for(lambda: not group_members(proc.pid), 3, "every process of the stack has exited", log)
        assert time.monotonic() - started < 35
        for pid in (second["gateway"], second["worker-1"]):
            assert not alive(pid), cmdline(pid)
        assert "SIGTERM: stopping 2 process(es)" in log.read_text()
        assert not (stack.run_dir / "run.pid").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.e2e
def test_run_sh_stops_everything_on_ctrl_c(stack: StackEnv, tmp_path: Path) -> None:
    """Two gateway processes on one port this time: their metrics add up whichever one answers."""
    stack.env["GATEWAY_PROCESSES"] = "2"
    log = tmp_path / "run.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(REPO / "deploy" / "run.sh")],
            cwd=REPO,
            env=stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.groups.append(proc.pid)
    try:
        wait_for(lambda: proc.poll() is not None or ready(stack.base), 90, "/readyz answers 200", log)
        children = stack.pids()
        assert {"gateway-1", "gateway-2"} <= set(children), children
        folder = stack.run_dir / "metrics" / "gateway"
        for name in ("gateway-1", "gateway-2"):
            wait_for(lambda n=name: (folder / f"counter_{children[n]}.db").exists(), 30, f"{name}'s metrics file", log)
        key = 'http_requests_total{method="GET",route="/healthz",status="200"}'
        for sent in range(1, 31):
            urllib.request.urlopen(stack.base + "/healthz", timeout=5).read()
            if sent % 10 == 0:
                for _ in range(3):
                    with urllib.request.urlopen(stack.base + "/metrics", timeout=5) as response:
                        lines = response.read().decode().splitlines()
                    count = next(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(key + " "))
                    assert count >= sent, f"a scrape counted {count} of {sent} requests"
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(45)
        except subprocess.TimeoutExpired:
            still = {pid: cmdline(pid) for pid in group_members(proc.pid)}
            pytest.fail(f"run.sh still running 45 s after SIGINT; group: {still}\n{log.read_text()[-6000:]}")
        assert code == 0, log.read_text()[-4000:]
        wait_for(lambda: not group_members(proc.pid), 3, "every process of the stack has exited", log)
        assert not any(alive(pid) for pid in children.values())
        # The INT trap, or (when bash swallowed the SIGINT) the first child that stopped cleanly.
        assert "SIGINT: stopping" in log.read_text() or "exited cleanly, as on Ctrl-C: stopping" in log.read_text()
        assert not list(folder.glob("gauge_livesum_*.db"))  # each gateway marked itself dead
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def run_sh(stack: StackEnv, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "deploy" / "run.sh"), *args],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.e2e
def test_detach_that_does_not_get_ready_fails_with_the_log_tail_and_stops(stack: StackEnv) -> None:
    # Something else holds the port (without SO_REUSEPORT): the gateway cannot bind, /readyz never answers.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", stack.port))
        squatter.listen()
        # Long enough for a gateway to start and fail to bind on a busy machine.
        stack.env["READY_TIMEOUT_S"] = "12"
        started = time.monotonic()
        proc = run_sh(stack, "--detach")
    assert proc.returncode == 1, proc
    assert time.monotonic() - started < 45
    assert "did not answer 200 within 12 s" in proc.stderr, proc.stderr
    assert "---- last lines of" in proc.stderr and "address already in use" in proc.stderr, proc.stderr
    assert "stopped" in proc.stderr
    assert not (stack.run_dir / "run.pid").exists()
    assert run_sh(stack, "--status").returncode == 3


@pytest.mark.e2e
def test_the_banner_try_line_carries_the_api_key_and_works_when_pasted(stack: StackEnv) -> None:
    """With API_KEYS set, the printed `Try: curl ...` must not be a 401 for whoever pastes it."""
    if not shutil.which("curl"):
        pytest.skip("the Try line is a curl command")
    stack.env["API_KEYS"] = f"ops=sha256:{'0' * 64},ci=k-{uuid.uuid4().hex}"
    try:
        started = run_sh(stack, "--detach", timeout=150)
        pid_file = stack.run_dir / "run.pid"
        if pid_file.exists():
            stack.groups.append(int(pid_file.read_text()))
        assert started.returncode == 0, started.stderr
        tries = [line.strip() for line in started.stderr.splitlines() if line.strip().startswith("Try: curl ")]
        assert len(tries) == 1, started.stderr
        command = tries[0].removeprefix("Try: ")
        assert stack.env["API_KEYS"].split("ci=")[1] in command  # the first plain key (the hashed one cannot be)
        pasted = subprocess.run(
            ["bash", "-c", command + " -sS -w '\\n%{http_code}'"],
            cwd=REPO,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Past the key check (what the upload then says of the workbook is the import's business).
        assert pasted.stdout.splitlines()[-1] not in ("401", "403"), pasted.stdout
    finally:
        stop = run_sh(stack, "--stop")
    assert stop.returncode == 0, stop.stderr


def readme_try_it() -> tuple[str, list[str]]:
    """The "Try it" shell block of docs/getting-started.md, which README.md shows too (the same, checked
    here), and the output it promises (its lines starting with `# `)."""
    block = docs.try_it(docs.GETTING_STARTED.read_text())
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Try it") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no ```sh block under README.md's ## Try it"
    assert match.group(1) == block.body, "README.md's Try it block differs from docs/getting-started.md's"
    return block.body, block.expected


@pytest.mark.e2e
def test_readme_try_it_runs_as_written(stack: StackEnv) -> None:
    if not shutil.which("curl"):
        pytest.skip("the README's commands need curl")
    block, expected = readme_try_it()
    assert expected, "the block shows no expected output"
    assert "./deploy/run.sh --stop" in (REPO / "README.md").read_text()
    assert "./deploy/run.sh --stop" in docs.GETTING_STARTED.read_text()
    try:
        # As pasted into a shell in the repo root; -e so that a failing command fails the test.
        proc = subprocess.run(
            ["bash", "-e", "-c", block], cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=150
        )
        pid_file = stack.run_dir / "run.pid"
        supervisor = int(pid_file.read_text()) if pid_file.exists() else None
        if supervisor:
            stack.groups.append(supervisor)
        log = (stack.run_dir / "run.log").read_text(errors="replace") if (stack.run_dir / "run.log").exists() else ""
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{log[-4000:]}"
        for line in expected:
            assert line in proc.stdout.splitlines(), f"expected {line!r} in:\n{proc.stdout}\n{log[-3000:]}"
        assert '"items"' in proc.stdout
        assert supervisor and alive(supervisor), "the stack should keep running after the block"

        status = run_sh(stack, "--status")
        assert status.returncode == 0 and f"running: supervisor pid {supervisor}" in status.stdout, status
        assert re.search(r"^worker-1 \d+$", status.stdout, re.M), status.stdout
        again = run_sh(stack, "--detach")
        assert again.returncode == 1 and "already running" in again.stderr, again
    finally:
        stop = run_sh(stack, "--stop")
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stderr
    assert supervisor is not None
    wait_for(lambda: not group_members(supervisor), 3, "the detached stack has exited")
    assert not ready(stack.base)


# ---- 4. test.sh --------------------------------------------------------------------------------------


def fake_checkout(root: Path, record: Path) -> Path:
    """A copy of deploy/lib.sh and deploy/test.sh whose .venv records what test.sh runs (the real
    interpreter answers everything else, e.g. ensure_services's settings and logins)."""
    (root / "deploy").mkdir(parents=True)
    for name in ("lib.sh", "test.sh"):
        shutil.copy2(REPO / "deploy" / name, root / "deploy" / name)
    (root / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "python": f'if [ "$1 $2" = "-m pytest" ]; then shift 2; echo pytest "$@" >> {record}; exit 0; fi\n'
        f'exec {VENV_PYTHON} "$@"\n',
        "ruff": f'echo ruff "$@" >> {record}\n',
        "mypy": f'echo mypy "$@" >> {record}\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    stamp = root / ".venv" / ".installed-test"
    stamp.touch()
    old = time.time() - 3600
    os.utime(root / "pyproject.toml", (old, old))  # older than the stamp: no pip install
    return root


def test_test_sh_runs_services_browser_lint_then_pytest(tmp_path: Path) -> None:
    record = tmp_path / "steps"
    root = fake_checkout(tmp_path / "checkout", record)
    env = {**os.environ, "MYSQL_DSN": real_dsn()}

    proc = subprocess.run(
        ["bash", str(root / "deploy" / "test.sh"), "-k", "cache"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    without_browser = ["ruff check .", "ruff format --check .", "mypy", "pytest -k cache"]
    assert record.read_text().splitlines() == without_browser

    record.unlink()
    # Another engineer's deploy/browser.sh; a failing ensure_browser must not stop the run.
    (root / "deploy" / "browser.sh").write_text(
        f'ensure_browser() {{ echo "ensure_browser" >> {record}; return 1; }}\n'
    )
    proc = subprocess.run(
        ["bash", str(root / "deploy" / "test.sh"), "-x"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert record.read_text().splitlines() == ["ensure_browser", *without_browser[:-1], "pytest -x"]


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    proc = subprocess.run(
        [shellcheck, "-x", "lib.sh", "run.sh", "test.sh"], cwd=REPO / "deploy", capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout
