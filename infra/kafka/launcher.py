"""Run a real single-node Apache Kafka broker (KRaft) without Docker.

Why: the engine is event-sourced on Kafka, and its integration and reliability
tests need a genuine broker (transactions, consumer groups, restarts) on machines
that have Java and Maven but no container engine. The broker jars come from Maven
Central via ``infra/kafka/pom.xml`` into ``infra/kafka/lib/`` (git-ignored), and
the broker is run directly with ``java -cp 'lib/*' kafka.Kafka``.

Manual use::

    python -m infra.kafka.launcher --data-dir /tmp/kafka-dev --port 9092
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

KAFKA_VERSION = "4.4.0"
"""Broker version pinned in pom.xml (kept in sync by hand; checked in ensure_jars)."""

KAFKA_DIR = Path(__file__).resolve().parent
POM_PATH = KAFKA_DIR / "pom.xml"
LIB_DIR = KAFKA_DIR / "lib"
_STAMP_NAME = ".complete"
_MIN_JAVA = 17

_JAVA_HINT = "install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)"
_MVN_HINT = "install Apache Maven 3.8+ (e.g. `apt-get install maven`)"


class KafkaLauncherError(RuntimeError):
    """Raised when the broker cannot be provisioned, started or stopped."""


# --------------------------------------------------------------------------- jars


def _which(tool: str, hint: str) -> str:
    """Find a tool on PATH or fail with a one-line message saying what to install."""
    path = shutil.which(tool)
    if path is None:
        raise KafkaLauncherError(f"`{tool}` not found on PATH: {hint}")
    return path


def _pom_digest() -> str:
    """Hash of the pom, so a version bump re-resolves the jars."""
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def _lib_complete(lib_dir: Path, digest: str) -> bool:
    """True when a previous resolution of this exact pom finished successfully."""
    stamp = lib_dir / _STAMP_NAME
    try:
        return (
            stamp.read_text().strip() == digest
            and (lib_dir / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
        )
    except OSError:
        return False


def ensure_jars(lib_dir: Path = LIB_DIR) -> Path:
    """Resolve the broker jars with Maven once; later calls return at once.

    Why a stamp file: a half-finished copy (Ctrl-C, network drop) must not pass
    for a usable classpath. A file lock keeps parallel test workers from
    running Maven into the same folder at the same time.
    """
    digest = _pom_digest()
    if _lib_complete(lib_dir, digest):
        return lib_dir
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = lib_dir.parent / f".{lib_dir.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _lib_complete(lib_dir, digest):
            return lib_dir
        _which("java", _JAVA_HINT)
        mvn = _which("mvn", _MVN_HINT)
        staging = lib_dir.parent / f".{lib_dir.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            f"-Dkafka.lib.dir={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise KafkaLauncherError(
                f"mvn failed to resolve Kafka {KAFKA_VERSION} jars "
                f"(exit {proc.returncode}):\n{tail}"
            )
        (staging / _STAMP_NAME).write_text(digest + "\n")
        shutil.rmtree(lib_dir, ignore_errors=True)
        staging.rename(lib_dir)
    return lib_dir


def _check_java() -> str:
    """Return the java binary, failing early (not in a log file) if it is too old."""
    java = _which("java", _JAVA_HINT)
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is not None:
        major = int(match.group(1))
        if major == 1 and match.group(2) is not None:  # "1.8.0_x" style
            major = int(match.group(2))
        if major < _MIN_JAVA:
            raise KafkaLauncherError(
                f"Kafka {KAFKA_VERSION} needs Java {_MIN_JAVA}+, found {major}: {_JAVA_HINT}"
            )
    return java


# ----------------------------------------------------------------- small helpers


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a currently unused TCP port (for tests and the controller)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _random_cluster_id() -> str:
    """A Kafka Uuid in its base64 text form (what `kafka-storage random-uuid` prints)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _tail(path: Path, lines: int = 40) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path.name})"
    return "\n".join(content[-lines:]) or f"({path.name} is empty)"


def _kafka_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    """Cursor over a (non-flexible) Kafka response body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return tuple(int(v) for v in values)

    def skip_string(self) -> None:
        (length,) = self.take(">h")
        self.pos += max(length, 0)

    def read_string(self) -> str:
        (length,) = self.take(">h")
        text = self.data[self.pos : self.pos + max(length, 0)].decode(errors="replace")
        self.pos += max(length, 0)
        return text

    def read_int32_array(self) -> tuple[int, ...]:
        (count,) = self.take(">i")
        return self.take(f">{max(count, 0)}i") if count > 0 else ()


@dataclass(frozen=True)
class PartitionState:
    """One partition as a broker's metadata shows it (leader -1: none)."""

    topic: str
    partition: int
    error: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class ClusterMetadata:
    """What Metadata v4 says: the live (registered, unfenced) brokers and every partition."""

    brokers: tuple[int, ...]
    controller: int
    topic_errors: dict[str, int]
    partitions: tuple[PartitionState, ...]


def read_metadata(
    host: str, port: int, timeout: float, topics: list[str] | None = None
) -> ClusterMetadata:
    """Metadata v4 over a raw socket.

    Why raw bytes: start() must work from sync code and from inside a running
    event loop alike, so it cannot lean on asyncio clients.
    """
    correlation_id = 7
    header = struct.pack(">hhi", 3, 4, correlation_id) + _kafka_string("oee-launcher")
    if topics is None:
        wanted = struct.pack(">i", -1)
    else:
        wanted = struct.pack(">i", len(topics)) + b"".join(_kafka_string(t) for t in topics)
    request = header + wanted + b"\x00"  # no auto-creation
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        reader = _Reader(_recv_exact(sock, size))
    got_id, _throttle, n_brokers = reader.take(">iii")
    if got_id != correlation_id:
        raise OSError("metadata response correlation mismatch")
    brokers: list[int] = []
    for _ in range(n_brokers):
        brokers.append(reader.take(">i")[0])  # node_id
        reader.skip_string()  # host
        reader.take(">i")  # port
        reader.skip_string()  # rack (nullable)
    reader.skip_string()  # cluster_id
    (controller,) = reader.take(">i")
    (n_topics,) = reader.take(">i")
    topic_errors: dict[str, int] = {}
    partitions: list[PartitionState] = []
    for _ in range(n_topics):
        (topic_error,) = reader.take(">h")
        name = reader.read_string()
        reader.take(">b")  # is_internal
        topic_errors[name] = topic_error
        (n_parts,) = reader.take(">i")
        for _ in range(n_parts):
            part_error, index, leader = reader.take(">hii")
            replicas = reader.read_int32_array()
            isr = reader.read_int32_array()  # (offline_replicas only from v5)
            partitions.append(PartitionState(name, index, part_error, leader, replicas, isr))
    return ClusterMetadata(tuple(brokers), controller, topic_errors, tuple(partitions))


def _metadata_ready(host: str, port: int, timeout: float, node_id: int | None = None) -> str | None:
    """Ask for the metadata of all topics; return None when usable, else why not.

    Usable means the node lists itself (registered and unfenced) and every existing
    partition has a leader, so clients do not start against a half-recovered broker.
    """
    metadata = read_metadata(host, port, timeout)
    if not metadata.brokers:
        return "metadata lists no broker yet"
    if node_id is not None and node_id not in metadata.brokers:
        return f"node {node_id} not registered yet (live: {list(metadata.brokers)})"
    for topic, error in metadata.topic_errors.items():
        if error != 0:
            return f"topic {topic} metadata error {error}"
    for part in metadata.partitions:
        if part.error != 0 or part.leader < 0:
            return f"partition without leader (error {part.error})"
    return None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise OSError("connection closed by broker")
        chunks += chunk
    return bytes(chunks)


def _die_with_parent_prefix() -> list[str]:
    """Argv prefix making Linux SIGKILL the broker if the launching thread dies.

    Why: a crashed or SIGKILLed test run must not leave a JVM holding the port.
    Only used from the main thread (the death signal follows the forking
    thread, so a worker thread's exit would otherwise kill a healthy broker).
    """
    setpriv = shutil.which("setpriv")
    if (
        setpriv is None
        or sys.platform != "linux"
        or threading.current_thread() is not threading.main_thread()
    ):
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


_LOG4J2 = """\
status = warn
name = oee-kafka
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.kafka_log.name = org.apache.kafka.storage.internals.log
logger.kafka_log.level = WARN
logger.config_dump.name = org.apache.kafka.common.config.AbstractConfig
logger.config_dump.level = WARN
logger.kafka_config.name = kafka.server.KafkaConfig
logger.kafka_config.level = WARN
"""

DEFAULT_BROKER_CONFIG: Mapping[str, str] = {
    "auto.create.topics.enable": "false",
    "delete.topic.enable": "true",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "10",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # A SIGKILLed node must wait out its own old session before it can re-register
    # (DUPLICATE_BROKER_REGISTRATION); keep that wait short for crash tests.
    "broker.session.timeout.ms": "4000",
    "broker.heartbeat.interval.ms": "1000",
    "unclean.leader.election.enable": "false",
    "log.retention.ms": "-1",
    "log.retention.bytes": "-1",
    "log.cleaner.enable": "true",
}
"""Single-node settings: every internal topic at RF 1, nothing expires, no auto-create."""


# ------------------------------------------------------------------------ broker

# Compile with C1 only. These brokers live for a test session or a benchmark, minutes at
# most, and with the JVM's default tiers its optimising compiler was half of a broker's CPU
# over a 20 s load run (16.6 s, of which the compiler threads 8.0 s; C1 only: 8.6 s, 1.4 s;
# the request threads did not get slower: 3.9 s against 5.1 s). A long-running broker
# (docker-compose's image) pays its compilation once and keeps the defaults.
QUICK_JIT = ("-XX:TieredStopAtLevel=1",)


class KafkaBroker:
    """One combined broker+controller KRaft node bound to 127.0.0.1.

    Why combined and static-quorum: one JVM is the cheapest real broker, and a
    static voter set lets the controller port change between restarts while the
    data dir (formatted once) keeps every event across stop/start/kill.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 9092,
        *,
        controller_port: int | None = None,
        host: str = "127.0.0.1",
        heap: str = "512m",
        startup_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        node_id: int = 1,
        log_level: str = "INFO",
        extra_config: Mapping[str, str] | None = None,
        lib_dir: Path = LIB_DIR,
        extra_jvm_args: tuple[str, ...] = (),
        cluster_id: str | None = None,
        quorum_voters: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port if port != 0 else free_port(host)
        self._controller_port_fixed = controller_port
        self.controller_port = controller_port or 0
        self.heap = heap
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.node_id = node_id
        self.log_level = log_level
        self.extra_config = dict(extra_config or {})
        self.lib_dir = lib_dir
        self.extra_jvm_args = extra_jvm_args
        self.cluster_id = cluster_id
        self.quorum_voters = quorum_voters
        self.suspended = False
        self._launched_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self.last_start_seconds: float | None = None
        self.last_exit_code: int | None = None

    # -- paths -------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        """Kafka's log.dirs (the partition data): persisted across restarts."""
        return self.data_dir / "kraft-logs"

    @property
    def broker_log(self) -> Path:
        """The broker's own log4j log (server.log equivalent)."""
        return self.data_dir / "broker.log"

    @property
    def stdout_log(self) -> Path:
        """JVM stdout/stderr (crashes before log4j starts end up here)."""
        return self.data_dir / "broker.stdout.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def bootstrap_servers(self) -> str:
        """The `host:port` string for aiokafka / faust (`kafka://` + this)."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- config ------------------------------------------------------------
    def _classpath(self) -> str:
        return str(self.lib_dir / "*")

    def _properties(self) -> dict[str, str]:
        h, p, cp = self.host, self.port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters or f"{self.node_id}@{h}:{cp}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{cp}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
        }
        props.update(DEFAULT_BROKER_CONFIG)
        props.update(self.extra_config)
        return props

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self._properties().items()]
        self.config_path.write_text(
            "# generated by infra/kafka/launcher.py\n" + "\n".join(lines) + "\n"
        )
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log_file=self.broker_log, level=self.log_level)
        )

    def _jvm_base(self, java: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            *QUICK_JIT,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            *self.extra_jvm_args,
            "-cp",
            self._classpath(),
        ]

    def _format_storage_once(self, java: str) -> None:
        """Format KRaft storage only on first use: reformatting would drop events."""
        if (self.log_dir / "meta.properties").exists():
            return
        cmd = [
            *self._jvm_base(java),
            "kafka.tools.StorageTool",
            "format",
            "--config",
            str(self.config_path),
            "--cluster-id",
            self.cluster_id or _random_cluster_id(),
            "--ignore-formatted",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (self.log_dir / "meta.properties").exists():
            raise KafkaLauncherError(
                f"kafka storage format failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr).strip()[-3000:]}"
            )

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> Self:
        """Start the broker and block until it answers Metadata (or fail loudly)."""
        if self.is_running():
            return self
        self.launch()
        return self.wait_until_ready()

    def launch(self) -> None:
        """Spawn the JVM without waiting for it.

        Why separate: the nodes of a cluster must all be up before any of them can
        elect a controller, so a cluster launches every node first, then waits.
        """
        self._launched_at = time.monotonic()
        ensure_jars(self.lib_dir)
        java = _check_java()
        self._acquire_data_dir()
        try:
            self._spawn(java)
        except BaseException:
            self._release_data_dir()
            raise
        self.suspended = False
        _LIVE.add(self)

    def wait_until_ready(self) -> Self:
        """Block until this node is registered and every partition has a leader."""
        t0 = self._launched_at
        try:
            self._wait_ready(t0 + self.startup_timeout)
        except BaseException:
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - t0
        return self

    def _acquire_data_dir(self) -> None:
        """Lock the data dir so two brokers never share (and corrupt) one log.

        The lock fd is inherited by the JVM, so the dir stays locked for as
        long as the broker lives, even if this Python process dies first.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / ".launcher.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise KafkaLauncherError(
                f"data dir {self.data_dir} is in use by another running broker"
            ) from None
        self._lock_fd = fd

    def _release_data_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _spawn(self, java: str) -> None:
        if self._controller_port_fixed is None:
            self.controller_port = free_port(self.host)
        for port in (self.port, self.controller_port):
            if _port_in_use(self.host, port):
                raise KafkaLauncherError(f"port {self.host}:{port} is already in use")
        self._write_config()
        self._format_storage_once(java)
        cmd = [
            *_die_with_parent_prefix(),
            *self._jvm_base(java),
            "kafka.Kafka",
            str(self.config_path),
        ]
        out = os.open(self.stdout_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,  # own process group: Ctrl-C in a terminal does not hit it
            pass_fds=(self._lock_fd,) if self._lock_fd is not None else (),
        )
        os.close(out)

    def _wait_ready(self, deadline: float) -> None:
        last_error = "no attempt"
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise KafkaLauncherError(
                    f"kafka broker exited during startup (exit {code}); log tail:\n"
                    f"{self._log_tails()}"
                )
            try:
                why_not = _metadata_ready(self.host, self.port, 2.0, self.node_id)
                if why_not is None:
                    return
                last_error = why_not
            except (OSError, struct.error) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise KafkaLauncherError(
                    f"kafka broker not ready on {self.bootstrap_servers} after "
                    f"{self.startup_timeout:.0f}s ({last_error}); log tail:\n{self._log_tails()}"
                )
            time.sleep(0.2)

    def _log_tails(self) -> str:
        return (
            f"--- {self.broker_log} ---\n{_tail(self.broker_log)}\n"
            f"--- {self.stdout_log} ---\n{_tail(self.stdout_log, 15)}"
        )

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: SIGTERM (flushes, clean shutdown), then SIGKILL after timeout."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.resume()  # a stopped JVM cannot handle SIGTERM
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        self.last_exit_code = proc.returncode
        self._reap_group()
        self._proc = None
        self._release_data_dir()
        _LIVE.discard(self)

    def kill(self) -> None:
        """Hard crash: SIGKILL with no shutdown (simulates a lost broker)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
        self.last_exit_code = proc.returncode
        self._reap_group()
        self._proc = None
        self.suspended = False
        self._release_data_dir()
        _LIVE.discard(self)

    def suspend(self) -> None:
        """SIGSTOP: the JVM freezes with its sockets open (a hung machine, a long GC pause)."""
        if self.is_running():
            self._signal(signal.SIGSTOP)
            self.suspended = True

    def resume(self) -> None:
        """SIGCONT after suspend(): the node carries on from where it froze."""
        if self.suspended:
            self._signal(signal.SIGCONT)
            self.suspended = False

    def restart(self, down_for: float = 0.0, *, hard: bool = False) -> None:
        """Stop (or kill), stay down `down_for` seconds, start again on the same data."""
        if hard:
            self.kill()
        else:
            self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    pause = restart
    """Alias: reliability tests 'pause' Kafka by restarting it after a gap."""

    @contextlib.contextmanager
    def stopped(self, *, hard: bool = False) -> Iterator[None]:
        """Context manager: broker is down inside the block, back up after it."""
        if hard:
            self.kill()
        else:
            self.stop()
        try:
            yield
        finally:
            self.start()

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _reap_group(self) -> None:
        """Kill anything left in the broker's process group (there should be none)."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"KafkaBroker({self.bootstrap_servers}, {self.data_dir}, {state})"


_LIVE: set[KafkaBroker] = set()


@atexit.register
def _stop_all() -> None:
    """Never leave a JVM behind when the Python process exits normally."""
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=10.0)


# ------------------------------------------------------------------------ cluster


def cluster_broker_config(nodes: int) -> dict[str, str]:
    """Replication settings that follow the cluster size.

    Why: with three nodes every topic, internal ones included, keeps three copies
    and a write needs two of them (acks=all), so one node can die or freeze with
    no acknowledged write lost and none refused; fewer nodes cannot promise that.
    """
    rf = str(min(3, nodes))
    isr = "2" if nodes >= 3 else "1"
    return {
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "unclean.leader.election.enable": "false",
    }


class KafkaCluster:
    """N combined controller+broker KRaft nodes on this machine, each its own JVM.

    Why: a single broker cannot show what happens when the leader of a partition
    dies, freezes or restarts. Each node has its own ports and data dir; they share
    a cluster id (kept in ``cluster.id``) and a static voter set, so any node can be
    killed, paused or restarted while the others keep a quorum.
    """

    def __init__(
        self,
        data_dir: Path | str,
        nodes: int = 3,
        *,
        base_port: int = 0,
        host: str = "127.0.0.1",
        heap: str = "384m",
        startup_timeout: float = 90.0,
        log_level: str = "INFO",
        extra_config: Mapping[str, str] | None = None,
        lib_dir: Path = LIB_DIR,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(_random_cluster_id() + "\n")
        self.cluster_id = id_file.read_text().strip()
        ports = [base_port + i if base_port else free_port(host) for i in range(nodes)]
        controller_ports = [free_port(host) for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@{host}:{cp}" for i, cp in enumerate(controller_ports))
        config = cluster_broker_config(nodes) | dict(extra_config or {})
        self.nodes = [
            KafkaBroker(
                self.data_dir / f"node-{i + 1}",
                ports[i],
                controller_port=controller_ports[i],
                host=host,
                heap=heap,
                startup_timeout=startup_timeout,
                node_id=i + 1,
                log_level=log_level,
                extra_config=config,
                lib_dir=lib_dir,
                cluster_id=self.cluster_id,
                quorum_voters=voters,
            )
            for i in range(nodes)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address: clients find the rest from whichever answers."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        return self.nodes[node_id - 1]

    def start(self) -> Self:
        """Launch every stopped node, then wait until each is registered and serving."""
        waiting = [node for node in self.nodes if not node.is_running()]
        try:
            for node in waiting:
                node.launch()
            for node in waiting:
                node.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Graceful stop of every node, all at once (one by one would lose the quorum midway)."""
        for node in self.nodes:
            if node.is_running():
                node.resume()
                node._signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def is_running(self) -> bool:
        return all(node.is_running() for node in self.nodes)

    def metadata(self, topics: list[str] | None = None, timeout: float = 3.0) -> ClusterMetadata:
        """The metadata from the first live, unfrozen node that answers."""
        errors: list[str] = []
        for node in self.nodes:
            if not node.is_running() or node.suspended:
                continue
            try:
                return read_metadata(node.host, node.port, timeout, topics)
            except (OSError, struct.error) as exc:
                errors.append(f"node {node.node_id}: {exc}")
        raise KafkaLauncherError(f"no node answered metadata ({'; '.join(errors) or 'none up'})")

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> node id of its leader (-1 while it has none)."""
        return {p.partition: p.leader for p in self.metadata([topic]).partitions}

    def busiest_leader(self, topic: str) -> int:
        """The node that leads the most partitions of `topic` (the worst one to lose)."""
        counts: dict[int, int] = {}
        for leader in self.leaders(topic).values():
            if leader >= 0:
                counts[leader] = counts.get(leader, 0) + 1
        if not counts:
            raise KafkaLauncherError(f"no partition of {topic} has a leader")
        return max(sorted(counts), key=lambda node_id: counts[node_id])

    def fully_replicated(self, topics: list[str] | None = None) -> bool:
        """Every running node is registered and, asked itself, shows every partition led
        and all its replicas in sync.

        Why every node: one just resumed or restarted can answer from stale metadata.
        """
        running = [n for n in self.nodes if n.is_running() and not n.suspended]
        for node in running:
            try:
                metadata = read_metadata(node.host, node.port, 3.0, topics)
            except (OSError, struct.error):
                return False
            if set(metadata.brokers) != {n.node_id for n in running}:
                return False
            if not all(
                p.leader >= 0 and set(p.isr) == set(p.replicas) for p in metadata.partitions
            ):
                return False
        return bool(running)

    def wait_fully_replicated(self, topics: list[str] | None = None, timeout: float = 60) -> float:
        """Block until fully_replicated(); the seconds it took."""
        began = time.monotonic()
        while not self.fully_replicated(topics):
            if time.monotonic() - began > timeout:
                raise KafkaLauncherError(f"replicas not back in sync after {timeout:.0f}s")
            time.sleep(0.2)
        return time.monotonic() - began

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaCluster({self.bootstrap_servers}, {self.data_dir})"


# -------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Run a broker in the foreground until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.kafka.launcher",
        description="Run a local Kafka broker (KRaft).",
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--controller-port", type=int, default=None)
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--nodes", type=int, default=1, help="KRaft nodes (ports from --port on)")
    args = parser.parse_args(argv)

    stop_event = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop_event.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if args.nodes > 1:
        return _run_cluster(args, stop_event)
    broker = KafkaBroker(
        args.data_dir,
        args.port,
        controller_port=args.controller_port,
        heap=args.heap,
        startup_timeout=args.timeout,
    )
    try:
        broker.start()
    except KafkaLauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Kafka {KAFKA_VERSION} ready on {broker.bootstrap_servers} "
        f"(pid {broker.pid}, started in {broker.last_start_seconds:.1f}s, "
        f"log {broker.broker_log}); Ctrl-C to stop",
        flush=True,
    )
    try:
        while not stop_event.wait(1.0):
            if not broker.is_running():
                print(f"broker died; log tail:\n{broker._log_tails()}", file=sys.stderr)
                return 1
    finally:
        broker.stop()
    print("stopped", flush=True)
    return 0


def _run_cluster(args: argparse.Namespace, stop_event: threading.Event) -> int:
    cluster = KafkaCluster(
        args.data_dir, args.nodes, base_port=args.port, heap=args.heap, startup_timeout=args.timeout
    )
    try:
        cluster.start()
    except KafkaLauncherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka {KAFKA_VERSION} cluster ready on {cluster.bootstrap_servers}; Ctrl-C to stop")
    try:
        while not stop_event.wait(1.0):
            if not cluster.is_running():
                print("a node died; stopping the cluster", file=sys.stderr)
                return 1
    finally:
        cluster.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
