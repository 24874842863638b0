"""Throwaway Redis and MariaDB for scripts/torture.py: each in a temp dir of its own on a free
port (never the machine's own servers), stopped and removed by stop(). The Python twin of
throwaway-servers.sh, for a script that needs a server per case rather than one of each.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    """The moment something listens on port; RuntimeError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return time.monotonic()
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def wait_until(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not after {timeout}s")


def require(binary, package):
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if not path:
        raise RuntimeError(f"missing {binary}: apt-get install {package}")
    return path


class Redis:
    """A redis-server with no persistence; cli() runs redis-cli as the default user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="torture-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [require("redis-server", "redis-server"), "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Mariadb:
    """A mariadbd with its own data, temporary and socket paths; sql() runs as root."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="torture-mariadb-")
        self.port = free_port()
        self.socket = os.path.join(self.dir, "mysqld.sock")
        data, tmp = os.path.join(self.dir, "data"), os.path.join(self.dir, "tmp")
        # Temporary tables in a directory of this server's own: in the shared /tmp, bootstraps
        # of servers started side by side lost theirs.
        os.mkdir(tmp)
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        subprocess.run([require("mariadb-install-db", "mariadb-server"), "--no-defaults",
                        "--auth-root-authentication-method=normal", f"--datadir={data}",
                        f"--tmpdir={tmp}", f"--user={user}", "--skip-test-db",
                        "--skip-name-resolve"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.process = subprocess.Popen(
            [require("mariadbd", "mariadb-server"), "--no-defaults", f"--datadir={data}",
             f"--tmpdir={tmp}", f"--socket={self.socket}",
             f"--pid-file={self.dir}/mysqld.pid", f"--log-error={self.dir}/error.log",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
             "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--skip-log-bin",
             f"--user={user}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 30)
        wait_until("mariadbd to answer", lambda: self.try_sql("SELECT 1") is not None, 30)

    def client(self, *args):
        return ["mariadb", "--no-defaults", "--batch", "--skip-column-names", *args]

    def try_sql(self, sql):
        out = subprocess.run(self.client(f"--socket={self.socket}", "-uroot", "-e", sql),
                             capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    def sql(self, sql):
        out = self.try_sql(sql)
        if out is None:
            raise RuntimeError(f"mariadb refused: {sql}")
        return out

    def sql_as(self, user, password, sql):
        """A query over TCP as another user, as an application would send it."""
        subprocess.run(self.client("-h127.0.0.1", f"-P{self.port}", f"-u{user}",
                                   f"-p{password}", "-e", sql),
                       check=True, capture_output=True)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
