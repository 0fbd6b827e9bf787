"""The inventory's CA on the deploy machine: its directory, checked and created 0700, and
``ca.crt`` + ``ca.key`` loaded or made once (atomically)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from pgsteady.tls import Authority, TlsError, create_ca

#: Beside the inventory file: per inventory, its CA and its clusters' shared secrets.
STATE_DIR = ".pgsteady"


def ca_dir(configured: str | None, inventory: Path | None) -> tuple[Path, str]:
    """Where an inventory's CA lives on the deploy machine (``postgres_tls_ca_dir``, else
    ``.pgsteady/<inventory name>`` beside the inventory file), and the inventory's name."""
    label = inventory.stem if inventory else "adhoc"
    if configured:
        return Path(configured), label
    base = inventory.parent if inventory else Path.cwd()
    return base / STATE_DIR / label, label


def _private_parent(parent: Path) -> None:
    """Create ``parent`` (and missing ancestors) 0700 whatever the umask, or check it;
    every existing directory above it is checked first (a root-owned sticky one passes)."""
    first = next(p for p in (parent, *parent.absolute().parents) if p.exists())
    real = first.resolve()
    for ancestor in ([real] if first != parent else []) + list(real.parents):
        _check_owner_and_mode(ancestor, sticky_ok=True)
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        parent.chmod(0o700)  # mkdir's mode is masked by the umask: never looser, maybe tighter
    _check_owner_and_mode(parent)


def _check_owner_and_mode(path: Path, sticky_ok: bool = False) -> None:
    """Refuse a directory another uid owns (root aside) or that group or others can write.

    With ``sticky_ok`` (the directories above the CA's parent) a root-owned sticky one,
    such as /tmp, passes: others may add entries there but not rename or remove ours.
    """
    st = path.stat()
    if sticky_ok and st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
        return
    if st.st_uid not in (os.getuid(), 0):
        raise TlsError(
            f"{path} is owned by uid {st.st_uid}, not by the user running the deploy "
            f"(uid {os.getuid()}) or root; that user could replace the CA: chown it, or "
            "set postgres_tls_ca_dir to a directory of your own"
        )
    if st.st_mode & 0o022:
        raise TlsError(
            f"{path} is mode {st.st_mode & 0o7777:04o} (group or others may write, and so "
            f"replace the CA); run: chmod go-w {path}, or set postgres_tls_ca_dir to a "
            "directory only you can write"
        )


def load_or_create_ca(directory: Path, label: str) -> Authority:
    """The CA in ``directory`` (``ca.crt`` + ``ca.key``), created on first use.

    The directory is 0700 and the key 0600, owned by whoever runs the deploy; a key that
    others can read is refused, and so is a directory (or its parent, made 0700 when
    missing, or any directory above that, a root-owned sticky one aside) that another uid
    owns or can write: that uid could swap the CA for its own.
    Creation is atomic: two deploys racing end up with one CA.
    """
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    _private_parent(directory.parent)
    if not directory.exists():
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        ca = create_ca(label)
        fd = os.open(tmp / "ca.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(ca.key_pem)
        (tmp / "ca.crt").write_bytes(ca.cert_pem)
        (tmp / "ca.crt").chmod(0o644)
        try:
            tmp.rename(directory)
        except OSError:  # another deploy created it first: use that one
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()
    _check_owner_and_mode(directory)
    mode = key_path.stat().st_mode & 0o777 if key_path.exists() else None
    if mode is None or not cert_path.exists():
        raise TlsError(
            f"{directory}: holds no ca.key/ca.crt; restore them from your backup, or move "
            "the directory away to create a new CA (clients then need the new ca.crt)"
        )
    if mode & 0o077:
        raise TlsError(f"{key_path} is mode {mode:04o}; run: chmod 600 {key_path}")
    ca = Authority(cert_path.read_bytes(), key_path.read_bytes())
    try:
        ca_cert, ca_key = ca.cert, ca.key
    except (ValueError, AssertionError) as exc:
        raise TlsError(f"{directory}: ca.crt or ca.key cannot be read ({exc})") from None
    if ca_cert.public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise TlsError(f"{directory}: ca.key does not belong to ca.crt")
    return ca
