"""A Celery deployment of the pipeline on one machine: worker hosts in network namespaces.

Each worker host is a network namespace (``ip netns``) with its own hostname (a UTS namespace),
joined to a bridge by a veth pair; it shares the filesystem, so the project and its virtualenv
are installed there as they are here.  Everything the workers talk to listens on the bridge
address, never on loopback, so every byte between a worker and a service crosses the veth network:

- PostgreSQL: two private servers (``initdb`` + ``pg_ctl``) bound to the bridge address, one for
  the audit database (HelloJohn's, read only) and one for Dagster's storage and the state database,
  as in production, so that what the audit database spends can be measured on its own;
- S3: a moto server bound to the bridge address;
- RabbitMQ: the machine's broker listens on 127.0.0.1:5672 only, which a namespace cannot reach,
  so ``socat`` forwards the bridge address to it (no sysctl or firewall change on the machine),
  and the deployment gets its own vhost.

The webserver, the daemon and the run processes it starts are on this host (the "head" host).
Everything is torn down by :meth:`CeleryDeployment.close`, whatever state it was left in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIXTURES = REPO / "audit_pipeline_tests" / "fixtures"
BROKER_UPSTREAM = ("127.0.0.1", 5672)


class HostsUnavailable(Exception):
    """This machine cannot build the hosts (not root, no iproute2, no namespaces); the message says why."""


def _run(*command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_until(condition: Any, what: str, timeout: float = 120, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(interval)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _kill_tree(process: subprocess.Popen[Any] | None) -> None:
    """SIGKILL a process and everything it started (the daemon's run processes included)."""
    if process is None or process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for victim in [*children, psutil.Process(process.pid)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@dataclass
class Network:
    """A bridge on this host and one namespace per worker host, each with a veth pair into the bridge."""

    hosts: int
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000:04d}{uuid.uuid4().hex[:2]}")
    subnet: ipaddress.IPv4Network = field(init=False)
    namespaces: list[str] = field(default_factory=list)
    bridge_up: bool = False

    def __post_init__(self) -> None:
        used = _run("ip", "-4", "-o", "addr", "show", check=False).stdout
        for second in range(200, 250):
            candidate = ipaddress.IPv4Network(f"10.{second}.{int(self.tag[:4]) % 256}.0/24")
            if str(candidate.network_address)[:-1] not in used:
                self.subnet = candidate
                return
        raise HostsUnavailable("no free 10.x.y.0/24 subnet for the bridge")

    @property
    def bridge(self) -> str:
        return f"apbr{self.tag}"

    @property
    def address(self) -> str:
        """The bridge's address: where every service of the deployment listens."""
        return str(self.subnet.network_address + 1)

    def host_address(self, index: int) -> str:
        return str(self.subnet.network_address + 11 + index)

    def hostname(self, index: int) -> str:
        return f"worker-{index + 1}"

    @staticmethod
    def check_possible() -> None:
        if os.geteuid() != 0:
            raise HostsUnavailable("network namespaces need root (ip netns add)")
        for tool in ("ip", "socat", "unshare"):
            if shutil.which(tool) is None:
                raise HostsUnavailable(f"{tool} is not installed (.ci/run installs iproute2, socat and util-linux)")
        probe = f"approbe{os.getpid()}"
        done = _run("ip", "netns", "add", probe, check=False)
        if done.returncode != 0:
            raise HostsUnavailable(f"ip netns add fails here: {done.stderr.strip()}")
        _run("ip", "netns", "del", probe, check=False)

    def up(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self.bridge_up = True
        _run("ip", "addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for index in range(self.hosts):
            namespace = f"apcel{self.tag}w{index + 1}"
            _run("ip", "netns", "add", namespace)
            self.namespaces.append(namespace)
            outside, inside = f"apv{self.tag}h{index + 1}", f"apv{self.tag}n{index + 1}"
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
            _run("ip", "link", "set", outside, "master", self.bridge, "up")
            _run("ip", "-n", namespace, "addr", "add", f"{self.host_address(index)}/{self.subnet.prefixlen}", "dev", inside)
            _run("ip", "-n", namespace, "link", "set", inside, "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")

    def throttle(self, index: int, rate: str) -> None:
        """Limit what worker host ``index`` receives and sends to ``rate`` (``tc`` token buckets on both ends of its veth).

        A day of a few MB then takes seconds to read and to publish, so that a test can kill the host
        while its export is staging the day, or between two of the day's objects, rather than racing it.
        """
        outside, inside = f"apv{self.tag}h{index + 1}", f"apv{self.tag}n{index + 1}"
        bucket = ["root", "tbf", "rate", rate, "burst", "64kb", "limit", "4mb"]
        _run("tc", "qdisc", "add", "dev", outside, *bucket)  # into the host: its reads of the audit table
        _run("ip", "netns", "exec", self.namespaces[index], "tc", "qdisc", "add", "dev", inside, *bucket)  # out of it: its uploads

    def command_on(self, index: int, command: list[str]) -> list[str]:
        """``command`` run on worker host ``index``: its network namespace and its own hostname."""
        return ["ip", "netns", "exec", self.namespaces[index], "unshare", "--uts", "sh", "-c", f'hostname {self.hostname(index)} && exec "$@"', "sh", *command]

    def pids(self, index: int) -> list[int]:
        done = _run("ip", "netns", "pids", self.namespaces[index], check=False)
        return [int(p) for p in done.stdout.split()]

    def kill_host(self, index: int) -> list[int]:
        """SIGKILL every process of worker host ``index``, as if it lost power; returns their pids."""
        killed = self.pids(index)
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return killed

    def down(self) -> None:
        for index, namespace in enumerate(self.namespaces):
            self.kill_host(index)
            _run("ip", "netns", "del", namespace, check=False)
        self.namespaces.clear()
        if self.bridge_up:
            _run("ip", "link", "del", self.bridge, check=False)
            self.bridge_up = False


class PrivatePostgres:
    """A PostgreSQL server of its own, listening on ``host`` only (the machine's listens on loopback)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = _free_port(host) if _can_bind(host) else 0
        self.directory = Path(tempfile.mkdtemp(prefix="audit-celery-pg-"))
        self.data = self.directory / "data"
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if not bins:
            raise HostsUnavailable("PostgreSQL server binaries (initdb) are not installed")
        self.bin = bins[-1].parent
        self.started = False

    def _as_owner(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        _run(*self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"))
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.host}/24 trust\n")
        options = f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories={self.directory} -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            *self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "server.log"), "-w", "start"), timeout=120
        )
        self.started = True

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def server_pid(self) -> int:
        """The postmaster's pid: its children are the sessions, and it reaps their CPU time when they end."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.started:
            _run(*self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"), check=False)
            self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)


def _can_bind(host: str) -> bool:
    try:
        _free_port(host)
    except OSError:
        return False
    return True


class Broker:
    """The machine's RabbitMQ, reachable on the bridge address through socat, in a vhost of this deployment."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = _free_port(host)
        self.vhost = f"audit-celery-{uuid.uuid4().hex[:10]}"
        self.forward: subprocess.Popen[bytes] | None = None
        self.created = False

    def start(self) -> None:
        if not _listening(*BROKER_UPSTREAM):
            raise HostsUnavailable(f"RabbitMQ is not listening on {BROKER_UPSTREAM[0]}:{BROKER_UPSTREAM[1]}")
        done = _run("rabbitmqctl", "add_vhost", self.vhost, check=False)
        if done.returncode != 0:
            raise HostsUnavailable(f"rabbitmqctl add_vhost failed (a vhost keeps this test's queues apart): {done.stderr.strip()[-300:]}")
        self.created = True
        _run("rabbitmqctl", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        upstream = f"TCP:{BROKER_UPSTREAM[0]}:{BROKER_UPSTREAM[1]}"
        self.forward = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{self.port},bind={self.host},fork,reuseaddr", upstream], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_until(lambda: _listening(self.host, self.port), "the broker forward")

    @property
    def url(self) -> str:
        # guest may log in through the forward: RabbitMQ sees a loopback client.
        return f"pyamqp://guest:guest@{self.host}:{self.port}/{self.vhost}"

    def stop(self) -> None:
        _kill_tree(self.forward)
        if self.created:
            _run("rabbitmqctl", "delete_vhost", self.vhost, check=False)
            self.created = False


class MotoS3:
    """moto's S3 server bound to the bridge address."""

    def __init__(self, host: str, log: Path) -> None:
        self.host = host
        self.port = _free_port(host)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([str(BIN / "moto_server"), "-H", self.host, "-p", str(self.port)], stdout=out, stderr=subprocess.STDOUT)
        _wait_until(lambda: _listening(self.host, self.port), "the moto S3 server")

    def stop(self) -> None:
        _kill_tree(self.process)


@dataclass
class CeleryDeployment:
    """Worker hosts, the services on the bridge, and Dagster (webserver, daemon) on this host."""

    workers: int
    root: Path
    network: Network = field(init=False)
    postgres: PrivatePostgres = field(init=False)
    source_server: PrivatePostgres = field(init=False)
    broker: Broker = field(init=False)
    s3: MotoS3 = field(init=False)
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    webserver_url: str = ""
    source_url: str = ""
    source_readonly_url: str = ""
    bucket: str = ""

    def __post_init__(self) -> None:
        self.network = Network(self.workers)

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    def worker_name(self, index: int) -> str:
        """Celery's name for worker ``index`` (recorded with every step it executes)."""
        return f"audit@{self.network.hostname(index)}"

    def start(self, *, pool_limit: int, started_workers: int | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.network.up()
        address = self.network.address
        self.postgres = PrivatePostgres(address)
        self.postgres.start()
        self.source_server = PrivatePostgres(address)
        self.source_server.start()
        self.s3 = MotoS3(address, self.root / "moto.log")
        self.s3.start()
        self.broker = Broker(address)
        self.broker.start()
        self._create_databases()
        self.bucket = f"audit-{uuid.uuid4().hex[:10]}"
        import boto3

        boto3.client(
            "s3", endpoint_url=self.s3.endpoint_url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        ).create_bucket(Bucket=self.bucket)
        self.home.mkdir(exist_ok=True)
        (self.home / "dagster.yaml").write_text((REPO / "deploy" / "celery" / "dagster.yaml").read_text())
        (self.root / "workspace.yaml").write_text(
            f"load_from:\n  - python_module:\n      module_name: audit_pipeline.definitions\n      location_name: audit_pipeline\n      working_directory: {self.root}\n"
        )
        self.env = self._environment()
        (self.root / "tmp").mkdir(exist_ok=True)
        self._dagster("instance", "migrate")
        self.set_pool_limit(pool_limit)
        for index in range(self.workers if started_workers is None else started_workers):
            self.start_worker(index)
        self._start_dagster()

    def set_pool_limit(self, limit: int) -> None:
        """``dagster instance concurrency set audit_source``: how many runs export at once."""
        self._dagster("instance", "concurrency", "set", "audit_source", str(limit))

    def _create_databases(self) -> None:
        self.source_url = self.source_server.create_database("hellojohn")
        with psycopg.connect(self.source_url, autocommit=True) as conn:
            conn.execute((FIXTURES / "audit_logs.sql").read_text())
            conn.execute("CREATE ROLE exporter LOGIN")
            conn.execute("GRANT SELECT ON audit_logs TO exporter")
        self.source_readonly_url = self.source_server.url("hellojohn", "exporter")
        self.postgres.create_database("dagster")
        self.postgres.create_database("audit_state")

    def _environment(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_", "AWS_"))}
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        return {
            **keep,
            "PYTHONPATH": pythonpath,
            # dagster-celery starts `celery` from PATH.
            "PATH": os.pathsep.join((str(BIN), os.environ.get("PATH", "/usr/bin:/bin"))),
            "DAGSTER_HOME": str(self.home),
            "AUDIT_DAGSTER_EXECUTOR": "celery",
            "DAGSTER_CELERY_BROKER_URL": self.broker.url,
            "DAGSTER_PG_HOST": self.postgres.host,
            "DAGSTER_PG_PORT": str(self.postgres.port),
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "dagster",
            "AUDIT_DATABASE_URL": self.source_readonly_url,
            "AUDIT_EXPORT_URL": f"s3://{self.bucket}/cluster",
            "AUDIT_S3_ENDPOINT_URL": self.s3.endpoint_url,
            "AUDIT_STATE_URL": self.postgres.url("audit_state"),
            # The deployment's settings file: state_url (the day locks) from AUDIT_STATE_URL.
            "AUDIT_CONFIG": str(REPO / "deploy" / "audit_pipeline.yaml"),
            "AUDIT_PARTITION_START": "2024-01-01",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "DAGSTER_TELEMETRY_DISABLED": "1",
            # Staging folders (a killed worker leaves its own behind) go with the deployment.
            "TMPDIR": str(self.root / "tmp"),
        }

    def _dagster(self, *args: str) -> None:
        done = subprocess.run([str(BIN / "dagster"), *args], env=self.env, cwd=self.root, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"dagster {' '.join(args)} failed: {done.stderr[-2000:]}")

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "wb") as log:
            process = subprocess.Popen(command, env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def start_worker(self, index: int) -> None:
        worker = [
            str(BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(REPO / "deploy" / "celery" / "celery.yaml"),
            "-n",
            "audit",
            "--",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
        ]
        self._spawn(f"worker-{index + 1}", self.network.command_on(index, worker))

    def _start_dagster(self) -> None:
        port = _free_port("127.0.0.1")
        self._spawn("webserver", [str(BIN / "dagster-webserver"), "-w", str(self.root / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)])
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.root / "workspace.yaml")])
        self.webserver_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early: {self.log_tail(name)}")
            try:
                return httpx.get(f"{self.webserver_url}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_until(ready, "the Dagster webserver", timeout=300)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.webserver_url}/graphql", json={"query": query, "variables": variables}, timeout=120)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]

    def kill_worker(self, index: int) -> list[int]:
        killed = self.network.kill_host(index)
        self.processes.pop(f"worker-{index + 1}", None)
        return killed

    def close(self) -> None:
        for process in self.processes.values():
            _kill_tree(process)
        self.processes.clear()
        for stop in ("network", "broker", "s3", "postgres", "source_server"):
            part = getattr(self, stop, None)
            if part is not None:
                with contextlib.suppress(Exception):
                    part.down() if stop == "network" else part.stop()


@contextlib.contextmanager
def celery_deployment(workers: int, root: Path, *, pool_limit: int, started_workers: int | None = None) -> Iterator[CeleryDeployment]:
    """Build, start, yield and always tear down a deployment (raises :class:`HostsUnavailable` where it cannot be built).

    ``started_workers`` starts only the first hosts' workers; :meth:`CeleryDeployment.start_worker` starts the others.
    """
    Network.check_possible()
    deployment = CeleryDeployment(workers, root)
    try:
        deployment.start(pool_limit=pool_limit, started_workers=started_workers)
        yield deployment
    finally:
        deployment.close()
