"""
Real servers for the tests, on 127.0.0.1 and free ports: moto's S3 API server and OpenSSH sshd;
and :func:`network_namespace`, a stand-in for another machine that never leaves this one.

Each server starts its process when created, waits until it accepts connections, and stops it in
``stop()`` -- or use it as a context manager (``with S3Server(workdir) as s3: ...``), as the
benchmarks do. Connections for Airflow are handed out as ``AIRFLOW_CONN_*`` JSON values.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[Any], name: str, timeout: float = 30, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {host}:{port} within {timeout}s")


@dataclass(frozen=True)
class NetworkNamespace:
    """Another machine on this one: a network namespace behind a veth pair (root only)."""

    name: str
    host_side: str  # the host's address on the veth (a host address other than its main one)
    address: str  # the namespace's address: where its servers listen

    @property
    def exec(self) -> list[str]:
        """The prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]


@contextlib.contextmanager
def network_namespace(prefix: str) -> Iterator[NetworkNamespace]:
    """
    A namespace named ``<prefix>-<random>`` on a random ``10.x.y.0/30`` no interface of this
    machine uses (host side ``.1``, namespace ``.2``, concurrent sessions do not clash); deleted,
    with its veth, on exit. Its traffic never leaves this machine.
    """
    tag = secrets.token_hex(3)
    name, outside, inside = f"{prefix}-{tag}", f"byo{tag}h", f"byo{tag}n"
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    while True:
        net = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}."
        if net not in used:
            break
    host_side, address = net + "1", net + "2"
    ip = ["ip", "-n", name]
    try:
        for argv in (
            ["ip", "netns", "add", name],
            ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
            ["ip", "link", "set", inside, "netns", name],
            ["ip", "addr", "add", f"{host_side}/30", "dev", outside],
            ["ip", "link", "set", outside, "up"],
            [*ip, "addr", "add", f"{address}/30", "dev", inside],
            [*ip, "link", "set", inside, "up"],
            [*ip, "link", "set", "lo", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        yield NetworkNamespace(name, host_side, address)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)  # takes the veth


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connection_uri_env(conn_id: str, connection: dict[str, Any]) -> tuple[str, str]:
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection)


class _Server:
    """A started server: ``with`` it to have it stopped at the end of the block."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class S3Server(_Server):
    """
    moto's standalone S3 API server, spoken to over HTTP by the real provider code.

    IAM is enforced: after the set-up calls, requests need the keys of one of two users,
    ``admin`` (everything) or ``reader`` (get and list only), so wrong credentials and
    permission denied are real answers of the server.
    """

    _POLICIES: dict[str, list[str]] = {"admin": ["*"], "reader": ["s3:GetObject", "s3:ListBucket"]}

    def __init__(self, workdir: Path) -> None:
        import boto3

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = open(workdir / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        set_up_calls = 3 * len(self._POLICIES)  # create_user, put_user_policy, create_access_key
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"INITIAL_NO_AUTH_ACTION_COUNT": str(set_up_calls)},
        )
        wait_for_port(self.port, self._process, "moto S3 server")
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="set-up",
            aws_secret_access_key="set-up",
        )
        self.keys: dict[str, tuple[str, str]] = {}
        for user, actions in self._POLICIES.items():
            iam.create_user(UserName=user)
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
            }
            iam.put_user_policy(UserName=user, PolicyName="byo-test", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])

    def connection(self, user: str = "admin", **overrides: Any) -> dict[str, Any]:
        access_key, secret_key = self.keys[user]
        connection = {
            "conn_type": "aws",
            "login": access_key,
            "password": secret_key,
            "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }
        return connection | overrides

    def client(self, user: str = "admin") -> Any:
        import boto3

        access_key, secret_key = self.keys[user]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        stop(self._process)
        self._log.close()


def ensure_sshd() -> str:
    """The sshd binary; installs openssh-server when missing (CI machines run as root)."""
    for candidate in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if candidate and os.path.exists(candidate):
            return candidate
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "openssh-server"],
        check=True,
        capture_output=True,
        env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
    )
    return "/usr/sbin/sshd"


class SftpServer(_Server):
    """
    OpenSSH ``sshd`` with its SFTP subsystem, a throwaway host key and a test user who can log in
    with a password or a key. Paths are real paths on this machine, under ``self.root``.
    """

    def __init__(self, workdir: Path) -> None:
        sshd = ensure_sshd()
        self.workdir = workdir
        # A system user of this server alone: concurrent test sessions (pytest-xdist workers)
        # would otherwise reset each other's password and home.
        self.user = "byo-sftp-" + secrets.token_hex(4)
        self.port = free_port()
        self.password = "byo-pw-" + secrets.token_hex(8)
        # Outside pytest's 0700 temp dirs, so that the SFTP user can reach it.
        self._top = Path(tempfile.mkdtemp(prefix="byo-sftp-"))
        self._top.chmod(0o755)
        self.root = self._top / "home"
        self.root.mkdir()
        self._create_user()
        os.chown(self.root, self.uid, self.gid)

        host_key = workdir / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True)
        self.host_key = (host_key.with_suffix(".pub")).read_text().split()[:2]
        client_key = workdir / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", client_key], check=True)
        self.private_key = client_key.read_text()
        keys_dir = self._top / "authorized_keys"  # sshd reads it as the user
        keys_dir.mkdir()
        (keys_dir / self.user).write_text(client_key.with_suffix(".pub").read_text())

        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        config = workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {keys_dir}/%u",
                    "StrictModes no",
                    "PasswordAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin no",
                    f"AllowUsers {self.user}",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "MaxStartups 100",
                    "MaxSessions 50",
                ]
            )
            + "\n"
        )
        self._log = open(workdir / "sshd.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self._process, "sshd")

    def _create_user(self) -> None:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(self.root), "--shell", "/bin/sh", self.user],
            check=True,
            capture_output=True,
        )
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}".encode(), check=True)
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def give(self, path: Path) -> None:
        """Hand a directory tree created by the tests (as root) to the SFTP user."""
        for item in [path, *path.rglob("*")]:
            os.chown(item, self.uid, self.gid)

    def connection(self, *, auth: str = "password", **extra: Any) -> dict[str, Any]:
        connection: dict[str, Any] = {
            "conn_type": "sftp",
            "host": "127.0.0.1",
            "port": self.port,
            "login": self.user,
            "extra": {"host_key": " ".join(self.host_key), **extra},
        }
        if auth == "password":
            connection["password"] = self.password
        else:
            connection["extra"]["private_key"] = self.private_key
        return connection

    def stop(self) -> None:
        stop(self._process)
        self._log.close()
        subprocess.run(["userdel", "--force", self.user], check=False, capture_output=True)
        shutil.rmtree(self._top, ignore_errors=True)
