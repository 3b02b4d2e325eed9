"""A private OpenLDAP `slapd` for tests: ephemeral 127.0.0.1 port, throwaway config and data.

No system service is used: each `Slapd` writes its own `slapd.conf` (core, cosine and
inetOrgPerson schemas, a small schema for AD's `extensionAttribute1`/`2`, the memberof overlay
so group members carry `memberOf`, the ppolicy overlay for `pwdAccountLockedTime`), an mdb
database in a temp dir, and runs slapd in the foreground as a child process. Entries are
loaded with `ldapadd` over the protocol (the memberof overlay only sees adds made through the
server). Anonymous clients can read nothing: the bot must bind. `stop()` and `start()` take
the server down and back on the same port.

Needs Debian's `slapd` and `ldap-utils`: `require_slapd()` skips with the reason where they
cannot be had, and fails under `CI=true` (CI installs them: `.ci/run`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.fakes.base import LoopbackTLS

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib64/openldap"), Path("/usr/lib/openldap"))
SUFFIX = "dc=example,dc=com"

# Active Directory's attribute OIDs for the two extension attributes, userAccountControl
# (bit 2: account disabled), accountExpires (FILETIME) and proxyAddresses (e-mail aliases);
# the auxiliary class lets inetOrgPerson entries carry them (an OpenLDAP experimental-arc OID).
AD_SCHEMA = """
attributetype ( 1.2.840.113556.1.2.423 NAME 'extensionAttribute1'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.424 NAME 'extensionAttribute2'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.159 NAME 'accountExpires'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.210 NAME 'proxyAddresses'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1123} )
objectclass ( 1.3.6.1.4.1.4203.666.11.7.1 NAME 'helpdeskChatIds' AUXILIARY
  MAY ( extensionAttribute1 $ extensionAttribute2 $ userAccountControl $ accountExpires $
  proxyAddresses ) )
"""


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).is_file()), None
    )


def _module_dir() -> Path | None:
    return next((d for d in MODULE_DIRS if (d / "back_mdb.la").exists()), None)


def slapd_missing() -> str | None:
    """Why a private slapd cannot run here, or None."""
    if _binary("slapd") is None:
        return "OpenLDAP slapd is not installed (apt-get install slapd ldap-utils)"
    if _binary("ldapadd") is None:
        return "ldapadd is not installed (apt-get install ldap-utils)"
    if not (SCHEMA_DIR / "inetorgperson.schema").is_file():
        return f"OpenLDAP schemas are missing in {SCHEMA_DIR}"
    modules = _module_dir()
    if modules is None or not (modules / "ppolicy.la").exists():
        return "OpenLDAP modules (back_mdb, memberof, ppolicy) are missing"
    return None


def require_slapd() -> None:
    """Skip (fail under CI=true) when slapd cannot be run."""
    reason = slapd_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must test against a real LDAP server")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Slapd:
    """One private slapd; `url` (and `ldaps_url` with `tls=True`) once started."""

    def __init__(self, *, tls: bool = False, limits: str = "") -> None:
        """`limits`: slapd.conf lines for the database, ahead of its default access rules
        (e.g. an administrative size limit for the bot's DN, or an `access` rule hiding an
        entry from it)."""
        self.dir = Path(tempfile.mkdtemp(prefix="slapd-"))
        self.limits = limits
        self.tls = LoopbackTLS() if tls else None
        self.admin_dn = f"cn=admin,{SUFFIX}"
        self.admin_password = secrets.token_urlsafe(16)
        self.port = 0
        self.tls_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        (self.dir / "db").mkdir()
        (self.dir / "ad.schema").write_text(AD_SCHEMA)
        (self.dir / "admin.pw").write_text(self.admin_password)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config(self) -> str:
        modules = _module_dir()
        includes = "\n".join(
            f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson")
        )
        tls = ""
        if self.tls is not None:
            tls = (
                f"TLSCACertificateFile {self.tls.ca_file}\n"
                f"TLSCertificateFile {self.tls.cert_file}\n"
                f"TLSCertificateKeyFile {self.tls.key_file}\n"
            )
        return f"""{includes}
include {self.dir / "ad.schema"}
modulepath {modules}
moduleload back_mdb
moduleload memberof
moduleload ppolicy
pidfile {self.dir / "slapd.pid"}
argsfile {self.dir / "slapd.args"}
{tls}
database mdb
suffix "{SUFFIX}"
rootdn "{self.admin_dn}"
rootpw {self.admin_password}
directory {self.dir / "db"}
maxsize 33554432
{self.limits}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
overlay memberof
overlay ppolicy
"""

    def start(self) -> Slapd:
        """Start (again on the same port, once it had one) and wait until it answers."""
        (self.dir / "slapd.conf").write_text(self._config())
        fresh = not self.port
        for _ in range(5):
            if fresh:  # another process may take a port between our probe and slapd's bind
                self.port = _free_port()
                self.tls_port = _free_port() if self.tls is not None else 0
            if self._launch():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"slapd did not start: {self._log_tail()}")

    def _launch(self) -> bool:
        urls = self.url + "/" + (f" {self.ldaps_url}/" if self.tls is not None else "")
        log = (self.dir / "slapd.log").open("ab")
        self._process = subprocess.Popen(
            [
                _binary("slapd") or "slapd",
                "-f",
                str(self.dir / "slapd.conf"),
                "-h",
                urls,
                "-d",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def _log_tail(self) -> str:
        path = self.dir / "slapd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        """Take the server down (its open connections drop)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def load(self, ldif: str) -> None:
        """Add entries with `ldapadd`, bound as the admin."""
        done = subprocess.run(
            [
                _binary("ldapadd") or "ldapadd",
                "-x",
                "-H",
                self.url,
                "-D",
                self.admin_dn,
                "-y",
                str(self.dir / "admin.pw"),
            ],
            input=ldif.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ldapadd failed: {done.stderr.decode(errors='replace')}")

    def modify(self, ldif: str) -> None:
        """Change entries with `ldapmodify` (LDIF with changetype), bound as the admin."""
        done = subprocess.run(
            [
                _binary("ldapmodify") or "ldapmodify",
                "-x",
                "-H",
                self.url,
                "-D",
                self.admin_dn,
                "-y",
                str(self.dir / "admin.pw"),
            ],
            input=ldif.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ldapmodify failed: {done.stderr.decode(errors='replace')}")

    def cleanup(self) -> None:
        self.stop()
        if self.tls is not None:
            self.tls.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
