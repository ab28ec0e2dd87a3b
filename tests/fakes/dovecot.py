"""A real Dovecot IMAP server in a temporary directory, for the e-mail watcher's tests.

Its own config: listens on 127.0.0.1 on a free port, plaintext login allowed (no TLS),
one passwd-file user, maildirs under the directory, INBOX plus a junk folder (``JUNK``) with
the SPECIAL-USE ``\\Junk`` flag. Works as root (mail processes then run as ``nobody``,
Dovecot refuses UID 0 for mail) and as an ordinary user (everything runs as that user).
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "alex@example.org"
PASSWORD = "app-s3cr3t-password"
# Named like Outlook's French junk folder: only its SPECIAL-USE flag says it is Junk.
JUNK = "Courrier indésirable"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Dovecot:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    home: Path
    tls_port: int | None = None  # implicit TLS (imaps), when started with a certificate
    # Dovecot's unix sockets live here: a short path of its own, since a socket path may
    # not exceed 107 bytes and pytest's temporary folders can be long.
    run_dir: Path | None = None
    user: str = USER
    password: str = PASSWORD

    def maildir(self) -> Path:
        return self.home / self.user / "Maildir"

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.home.parent != self.root:
            shutil.rmtree(self.home.parent, ignore_errors=True)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _accounts() -> tuple[str, str, int, int]:
    """(login user, internal user, mail uid, mail gid) for the current process."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        login = "dovenull" if _has_user("dovenull") else "nobody"
        internal = "dovecot" if _has_user("dovecot") else "nobody"
        return login, internal, nobody.pw_uid, nobody.pw_gid
    me = pwd.getpwuid(os.getuid())
    return me.pw_name, me.pw_name, me.pw_uid, me.pw_gid


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _tls_config(root: Path, tls_port: int | None) -> str:
    if tls_port is None:
        return """ssl = no
service imap-login {
  inet_listener imaps {
    port = 0
  }
}
"""
    return f"""ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
service imap-login {{
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def _oauth2_config(root: Path, introspection_url: str | None) -> str:
    """XOAUTH2 logins checked against a token introspection endpoint; the passwd-file
    passdb comes first and passes a token it cannot verify on to this one."""
    if introspection_url is None:
        return ""
    (root / "oauth2.conf.ext").write_text(
        "introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        "username_attribute = username\n"
        "active_attribute = active\n"
        "active_value = true\n"
    )
    return f"""auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
"""


def _config(
    root: Path,
    home: Path,
    port: int,
    tls_port: int | None,
    introspection_url: str | None,
    run_dir: Path,
) -> str:
    login, internal, uid, gid = _accounts()
    group = grp.getgrgid(os.getgid()).gr_name if os.geteuid() != 0 else "root"
    return f"""
base_dir = {run_dir}
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{_tls_config(root, tls_port)}disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login}
default_internal_user = {internal}
default_internal_group = {group if os.geteuid() != 0 else internal}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
mail_plugins =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox "{JUNK}" {{
    special_use = \\Junk
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service auth {{
  user = {"$default_internal_user" if os.geteuid() != 0 else "root"}
}}
service auth-worker {{
  user = {"$default_internal_user" if os.geteuid() != 0 else "root"}
}}
{_oauth2_config(root, introspection_url)}"""


def start(
    root: Path,
    certificate: tuple[bytes, bytes] | None = None,
    introspection_url: str | None = None,
) -> Dovecot:
    """Start Dovecot under ``root`` and wait until it greets on its port. With a
    ``certificate`` (PEM chain, PEM key) it also offers STARTTLS and implicit TLS; with
    an ``introspection_url`` it accepts XOAUTH2 tokens that endpoint says are active."""
    port = free_port()
    tls_port = free_port() if certificate else None
    root.mkdir(parents=True, exist_ok=True)
    if certificate:
        (root / "server.pem").write_bytes(certificate[0])
        (root / "server.key").write_bytes(certificate[1])
    (root / "state").mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="ncdv-"))
    home = root / "home"
    if os.geteuid() == 0:
        # Mail processes run as nobody, who cannot enter pytest's 0700 directories.
        home = Path(tempfile.mkdtemp(prefix="nocontact-dovecot-")) / "home"
        _, _, uid, gid = _accounts()
        os.chmod(home.parent, 0o755)  # noqa: S103 - nobody must enter it
        (home / USER).mkdir(parents=True)
        for path in (home, home / USER):
            os.chown(path, uid, gid)
    else:
        (home / USER).mkdir(parents=True, exist_ok=True)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, home, port, tls_port, introspection_url, run_dir))
    process = subprocess.Popen(  # noqa: S603 - a fixed binary with our own config
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    server = Dovecot(root, port, process, home, tls_port, run_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"dovecot exited: {output}\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"dovecot did not answer on port {port}\n{server.log()}")
