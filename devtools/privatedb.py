"""A private MariaDB for `make run` and `make test` when no database is configured.

MySQL/MariaDB is the product's record (row locks, READ COMMITTED, ON DUPLICATE KEY): development
and tests run on the same database as production, never on a stand-in. This starts Debian's
`mariadbd` (package mariadb-server; .ci/system-deps installs it) with its own data directory and a
loopback port, so it never touches a system server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

DATABASE = "tickets"


class MariaDBMissing(RuntimeError):
    pass


def _binary(name: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None)
    if found is None:
        raise MariaDBMissing(f"{name} not found: install Debian's mariadb-server (apt-get install mariadb-server), "
                             "or set DATABASE_URL to a MySQL/MariaDB database")
    return found


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"mariadbd did not answer on 127.0.0.1:{port} within {timeout:.0f} s")


def start_mariadb(directory: Path, port: int, *, fresh: bool = False) -> tuple[str, subprocess.Popen]:
    """Start mariadbd on 127.0.0.1:``port`` with its data in ``directory`` (created on first use,
    kept across runs unless ``fresh``); returns the SQLAlchemy URL of its database and the process."""
    import pymysql

    datadir = directory / "data"
    if fresh and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not (datadir / "mysql").exists():
        shutil.rmtree(datadir, ignore_errors=True)
        subprocess.run([_binary("mariadb-install-db", "/usr/bin"), "--no-defaults", f"--datadir={datadir}",
                        "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db",
                        "--skip-name-resolve"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = directory / "mariadb.log"
    proc = subprocess.Popen(
        [_binary("mariadbd", "/usr/sbin"), "--no-defaults", f"--datadir={datadir}", "--user=root",
         "--bind-address=127.0.0.1", f"--port={port}", f"--socket={directory / 'mariadb.sock'}",
         f"--pid-file={directory / 'mariadb.pid'}", f"--log-error={log}", "--skip-name-resolve",
         "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
         "--innodb-buffer-pool-size=256M", "--innodb-flush-log-at-trx-commit=2", "--max-connections=500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_port(port, proc, log)
    deadline = time.monotonic() + 30
    while True:  # the port opens a moment before the server takes logins
        try:
            conn = pymysql.connect(host="127.0.0.1", port=port, user="root")
            break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4")
    conn.close()
    return f"mysql+pymysql://root@127.0.0.1:{port}/{DATABASE}", proc


def stop_mariadb(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """A clean shutdown (SIGTERM: InnoDB flushes), a SIGKILL past ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
