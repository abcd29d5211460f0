"""A real PostgreSQL server for the tests (Debian's `postgresql` package; .ci/run installs it).

    server = PostgresServer.start(folder)      # initdb + pg_ctl on a free 127.0.0.1 port
    url = server.new_database()                # a fresh, empty database: postgresql://...
    server.stop("immediate"); server.start_again()   # a crash and a restart, for the reliability tests
    server.close()

initdb refuses to run as root: as root, the server runs as the `postgres` user (runuser) in
a temporary folder it owns; otherwise as the current user. fsync is off (the tests never
crash the machine, only the server: what it acknowledged is in the operating system's cache
and survives a crash of the server); everything else is the packaged default.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.app_server import free_port

_counter = itertools.count(1)


def find_bindir() -> Path | None:
    """PostgreSQL's programs: $PG_BINDIR, Debian's /usr/lib/postgresql/<newest>/bin, or pg_ctl on PATH."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    found = shutil.which("pg_ctl")
    candidates.append(str(Path(found).parent) if found else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").is_file() and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


class PostgresServer:
    def __init__(self, bindir: Path, folder: Path, port: int):
        self.bindir, self.folder, self.port = bindir, folder, port
        self.data = folder / "data"
        self.log = folder / "server.log"

    @classmethod
    def start(cls, bindir: Path) -> "PostgresServer":
        folder = Path(tempfile.mkdtemp(prefix="digit-studio-pg-"))  # in /tmp: the postgres user must reach it
        server = cls(bindir, folder, free_port())
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")  # KeyError: Debian's package creates this user
            os.chown(folder, user.pw_uid, user.pw_gid)
        server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                    "--locale=C", "--no-sync")
        server.start_again()
        return server

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start_again(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        """The address of a fresh, empty schema (its own search_path): as good as a new database for the
        store, and made in milliseconds where CREATE DATABASE takes most of a second here."""
        name = f"test_{os.getpid()}_{next(_counter)}"
        self.execute(f"CREATE SCHEMA {name}")
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("%3D", 1)[1]
        self.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout, done.stderr + tail)


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
