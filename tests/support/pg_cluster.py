"""A throwaway PostgreSQL cluster for tests and benchmarks.

`PgCluster().create()` runs initdb in a temp dir, starts the server on a free
loopback port with SCRAM auth, TLS (a test CA made here) and one role per
upstream auth method, and seeds a database `app` with a table `items`. Every
password is a random canary (`canary-<hex>`) so a test can prove it never
leaks. PostgreSQL refuses to run as root, so under root (CI) the server runs
as the `postgres` system user.

    with running_cluster() as cluster:
        psycopg.connect(cluster.dsn(user="scramuser"))
"""

import datetime
import ipaddress
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support.ports import free_port
from tests.support.watchdog import start_watchdog, stop_watchdog

SUPERUSER = "postgres"
RUN_AS_USER = "postgres"  # the OS user that runs the server when we are root
DATABASE = "app"
SEED_TABLE = "items"
SEED_ROWS = 100

# Role -> the pg_hba method that its TCP connections must use. ssluser is hostssl-only.
ROLE_METHODS = {
    "md5user": "md5",
    "clearuser": "password",
    "trustuser": "trust",
    "scramuser": "scram-sha-256",
    "ssluser": "scram-sha-256",
}

HBA_RULES = """\
# TYPE    DATABASE USER       ADDRESS        METHOD
local     all      all                       scram-sha-256
hostssl   all      ssluser    127.0.0.1/32   scram-sha-256
hostnossl all      ssluser    0.0.0.0/0      reject
host      all      md5user    127.0.0.1/32   md5
host      all      clearuser  127.0.0.1/32   password
host      all      trustuser  127.0.0.1/32   trust
host      all      scramuser  127.0.0.1/32   scram-sha-256
host      all      all        127.0.0.1/32   scram-sha-256
"""

SEED_SQL = sql.SQL("""
CREATE TABLE {table} (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    price numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO {table}
SELECT i, 'item ' || i, 'user' || i || '@example.com', i * 1.25,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, {rows}) AS i;
""")


class PgClusterError(RuntimeError):
    """The test cluster could not be created, started or queried."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl, postgres and psql."""
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PgClusterError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/15/bin, `pg_config --bindir` "
        "and PATH). Install them, e.g. `apt-get install postgresql`."
    )


class PgCluster:
    """One throwaway PostgreSQL server: its data dir, port, passwords and TLS CA."""

    host = "127.0.0.1"

    def __init__(self, bindir: Path | None = None, max_connections: int = 200) -> None:
        self.bindir = bindir or find_bindir()
        self.max_connections = max_connections
        self.port = 0
        self.passwords = {role: f"canary-{secrets.token_hex(12)}" for role in (SUPERUSER, *ROLE_METHODS)}
        self.base_dir: Path | None = None
        self.ca_pem = ""
        self._owner = _server_account() if os.geteuid() == 0 else None
        self._running = False
        self._watchdog: subprocess.Popen[bytes] | None = None

    # --- paths and credentials -------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._base / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base / "sock"

    @property
    def log_file(self) -> Path:
        return self._base / "postgres.log"

    @property
    def ca_file(self) -> Path:
        return self._base / "ca.pem"

    @property
    def superuser_password(self) -> str:
        return self.passwords[SUPERUSER]

    @property
    def running(self) -> bool:
        return self._running

    @property
    def _base(self) -> Path:
        if self.base_dir is None:
            raise PgClusterError("The cluster has not been created yet; call create() first.")
        return self.base_dir

    def dsn(
        self,
        user: str = SUPERUSER,
        password: str | None = None,
        dbname: str = DATABASE,
        sslmode: str = "disable",
        **extra: str | int,
    ) -> str:
        """A libpq connection string to this cluster over TCP (password defaults to the role's own)."""
        params: dict[str, str | int] = {"host": self.host, "port": self.port, "dbname": dbname, "user": user}
        password = self.passwords.get(user, "") if password is None else password
        if password:
            params["password"] = password
        params["sslmode"] = sslmode
        if sslmode in ("verify-ca", "verify-full"):
            params["sslrootcert"] = str(self.ca_file)
        params.update(extra)
        return make_conninfo(**params)

    def log_text(self) -> str:
        """What the server has logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # --- lifecycle ---------------------------------------------------------------

    def create(self) -> "PgCluster":
        """initdb, configure, start and seed the cluster; returns self."""
        self.base_dir = _make_base_dir()
        try:
            self._own(self.base_dir)
            self._watchdog = start_watchdog(ORPHAN_CLEANUP, str(self.data_dir), str(self.base_dir))
            self._initdb()
            self._configure()
            self.start()
            self._seed()
        except BaseException:
            self.destroy()
            raise
        return self

    def start(self) -> None:
        """Start the server; a port taken meanwhile by someone else is replaced by a free one."""
        if self._running:
            return
        for _attempt in range(3):
            if not self.port:
                self.port = free_port(self.host)
            self.set_config({"port": str(self.port)})
            result = self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file))
            if result.returncode == 0:
                self._running = True
                return
            if "could not bind" not in self.log_text():
                break
            self.port = 0
        raise PgClusterError(f"PostgreSQL did not start: {result.stderr.strip()}\n{self._log_tail()}")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (immediate by default: a test cluster has nothing to save)."""
        if not self._running:
            return
        result = self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)
        # pg_ctl status exits 3 when no server runs: it died by itself, which a test may have caused.
        if result.returncode != 0 and self._pg_ctl("status").returncode != 3:
            raise PgClusterError(f"pg_ctl stop failed: {result.stderr.strip()}\n{self._log_tail()}")
        self._running = False

    def destroy(self) -> None:
        """Stop the server if it runs and delete everything on disk."""
        if self.base_dir is None:
            return
        try:
            self.stop()
        finally:
            stop_watchdog(self._watchdog)
            self._watchdog = None
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> "PgCluster":
        return self if self.base_dir else self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    # --- clients -------------------------------------------------------------------

    def psql(
        self,
        sql_text: str,
        *args: str,
        user: str = SUPERUSER,
        password: str | None = None,
        dbname: str = DATABASE,
        sslmode: str = "disable",
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real psql over TCP, unaligned and tuples-only; extra psql options go in args."""
        password = self.passwords.get(user, "") if password is None else password
        conninfo = self.dsn(user=user, password="", dbname=dbname, sslmode=sslmode)
        command = [str(self._psql_binary()), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql_text, *args]
        env = _clean_env()
        if password:
            env["PGPASSWORD"] = password  # not on the command line, where `ps` shows it
        result = subprocess.run(
            [*command, "--dbname", conninfo], capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise PgClusterError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # --- internals -----------------------------------------------------------------------

    def _initdb(self) -> None:
        password_file = self._base / "superuser-password"
        password_file.write_text(self.superuser_password + "\n")
        self._own(password_file)
        options = ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        try:
            result = self._run_as_server(
                str(self.bindir / "initdb"),
                *("-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={password_file}", *options),
            )
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PgClusterError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def _configure(self) -> None:
        self.socket_dir.mkdir(mode=0o700)
        self._own(self.socket_dir)
        ca_pem, cert_pem, key_pem = make_test_certificates()
        self.ca_pem = ca_pem.decode()
        self.ca_file.write_bytes(ca_pem)
        for name, data, mode in (("server.crt", cert_pem, 0o644), ("server.key", key_pem, 0o600)):
            path = self.data_dir / name
            path.write_bytes(data)
            path.chmod(mode)
            self._own(path)
        (self.data_dir / "pg_hba.conf").write_text(HBA_RULES)
        self.set_config(
            {
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{self.socket_dir}'",
                "unix_socket_permissions": "0700",
                "max_connections": str(self.max_connections),
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "ssl": "on",
                "ssl_cert_file": "'server.crt'",
                "ssl_key_file": "'server.key'",
                "password_encryption": "'scram-sha-256'",
            }
        )

    def _seed(self) -> None:
        with psycopg.connect(self.dsn(dbname="postgres"), autocommit=True) as conn:
            for role in ROLE_METHODS:
                # md5 auth needs an md5-hashed password; any other hash makes md5 use SCRAM instead.
                encryption = "md5" if ROLE_METHODS[role] == "md5" else "scram-sha-256"
                conn.execute(sql.SQL("SET password_encryption = {}").format(sql.Literal(encryption)))
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(self.passwords[role])
                    )
                )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(*map(sql.Identifier, (DATABASE, SUPERUSER))))
        roles = sql.SQL(", ").join(map(sql.Identifier, ROLE_METHODS))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(SEED_SQL.format(table=sql.Identifier(SEED_TABLE), rows=sql.Literal(SEED_ROWS)))
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(roles))
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(sql.Identifier(SEED_TABLE), roles)
            )

    def set_config(self, values: dict[str, str]) -> None:
        """Set postgresql.conf values (quoted as the file wants them); they apply on the next start()."""
        # Later lines win in postgresql.conf, so appending is enough to change a value.
        lines = "".join(f"{name} = {value}\n" for name, value in values.items())
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(lines)

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run_as_server(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run_as_server(self, *command: str) -> subprocess.CompletedProcess[str]:
        if self._owner is not None:
            command = _as_user(self._owner.pw_name, command)
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_clean_env(),
            cwd=self._base,
            timeout=120,
            check=False,
        )

    def _own(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _psql_binary(self) -> Path:
        local = self.bindir / "psql"
        if local.is_file():
            return local
        found = shutil.which("psql")
        if not found:
            raise PgClusterError("psql not found; install postgresql-client.")
        return Path(found)

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@contextmanager
def running_cluster(bindir: Path | None = None, max_connections: int = 200) -> Iterator[PgCluster]:
    """A created, running cluster for the duration of the block; deleted afterwards."""
    cluster = PgCluster(bindir=bindir, max_connections=max_connections).create()
    try:
        yield cluster
    finally:
        cluster.destroy()


# Immediate shutdown of the postmaster named in postmaster.pid, then the files.
ORPHAN_CLEANUP = (
    'if [ -f "$1/postmaster.pid" ]; then kill -QUIT "$(head -n 1 "$1/postmaster.pid")" 2>/dev/null; sleep 1; fi; '
    'rm -rf "$2"'
)


def _make_base_dir() -> Path:
    parent = Path(tempfile.gettempdir())
    if os.geteuid() == 0 and not _traversable_by_others(parent):
        parent = Path("/tmp")  # noqa: S108 (the server user must reach its data dir)
    base = Path(tempfile.mkdtemp(prefix="gatehouse-pg-", dir=parent))
    base.chmod(0o755)
    return base


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(part).st_mode & 0o001 for part in (path, *path.parents))


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/bin/sh", RUN_AS_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(RUN_AS_USER)


def _as_user(user: str, command: tuple[str, ...]) -> tuple[str, ...]:
    if shutil.which("runuser"):
        return ("runuser", "-u", user, "--", *command)
    return ("su", "-s", "/bin/sh", "-c", shlex.join(command), user)


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables, which would silently change what libpq tools do."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def make_test_certificates() -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert, server key) as PEM; the server cert is for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Gatehouse test CA {secrets.token_hex(4)}")])
    ca_cert = (
        _certificate_builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    alternative_names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_cert = (
        _certificate_builder(server_name, ca_name, server_key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encoding = serialization.Encoding.PEM
    return ca_cert.public_bytes(encoding), server_cert.public_bytes(encoding), key_pem


def _certificate_builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
