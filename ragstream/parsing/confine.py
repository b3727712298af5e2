"""Keeping the worker's secrets and the network out of a parser child's reach.

A parse pod's worker holds secrets (``RAGSTREAM_DATABASE_URL`` with its
password, broker credentials, cloud and API keys) and can reach the database,
the broker and more. A parser child runs hostile documents through large C
libraries, so it is given neither. The fork server sets all of this up once,
for itself, before it forks anything: every parser child inherits it (no
per-document cost). The fork server itself never needs the network, a
capability nor a file write.

**Environment** (everywhere). The fork server is started with an allow-list of
variables (:func:`scrubbed_environ`: locale, time zone, the interpreter's own
``PYTHON*`` settings, ``PATH``, ``HOME``, ``TMPDIR``), never the worker's
environment: no secret is in its environment, in ``/proc/<pid>/environ`` of
it or of a child, nor anywhere in the memory a child is forked from.

**Network**, in layers, each applied where the kernel and the container allow:

* A seccomp filter (:func:`deny_sockets`), which needs nothing but a
  seccomp-capable kernel on x86-64 or arm64: ``socket()`` of any family fails
  with ``EPERM`` (the child talks to the worker on a socket it inherits), as do
  ``io_uring_setup`` (io_uring can create sockets behind seccomp's back),
  ``ptrace``, ``process_vm_readv``/``writev`` and every system call of a
  foreign ABI (32-bit, x32). It holds as root, as any other user, and inside
  Docker or Kubernetes under their default seccomp profiles.
* A network namespace of its own, with only a loopback that is down
  (:func:`isolate_network`): directly with ``CAP_SYS_ADMIN`` (root outside a
  container), else inside a new user namespace where the kernel allows
  unprivileged ones (most hosts). Docker's and Kubernetes' default seccomp
  profiles refuse both without ``CAP_SYS_ADMIN``, so in the image (uid
  10001) this layer is usually absent; the seccomp filter holds regardless.
* Landlock (:func:`landlock`, Linux 5.13+ with Landlock among its LSMs;
  allowed by the default profiles of Docker 23+ and containerd 1.6+): TCP bind
  and connect refused on 6.7+ kernels, abstract Unix sockets and signals to
  outside processes on 6.12+.

**Other processes' environment and memory** (``/proc/<worker pid>/environ``,
``/proc/<worker pid>/mem``). A child runs as the worker's user, so by default
it could read them. Two layers stop that:

* Landlock puts the fork server and its children in a domain of their own;
  the kernel refuses them ptrace-like access to any process outside it.
* The fork server gives up every capability (:func:`drop_capabilities`;
  for root: uid 0 stays, its powers go). Root's capabilities would get past
  Landlock's check (seen on Linux 6.18: ``environ`` stays readable to a
  landlocked root), and a process without capabilities may not inspect one
  that has them, such as a root worker, whether or not Landlock is there.

Where the fork server reports no Landlock (older kernels, Docker before 23),
the worker makes itself non-dumpable (:func:`keep_children_out`): its
``/proc`` entries then belong to root and need ``CAP_SYS_PTRACE``, which no
parser has. So these reads fail as root and as any other user, in a container
or not; the price of the fallback is that the worker leaves no core dump and a
debugger needs root to attach to it.

**Files.** Under Landlock the children cannot create, write, truncate, remove
or rename any file (so a parser cannot plant code for the worker to import);
reading stays allowed.

:func:`confine` applies the layers and says which hold; the fork server
reports that to the worker, which logs it. :func:`observe` is a test and
diagnosis hook: run in a parser child instead of a parse
(``sandbox._probe``), it reports what the child can read and reach.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import socket
import struct
from collections.abc import Mapping, Sequence

# --- environment -------------------------------------------------------------

_ALLOWED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "TZ",
        "LANG",
        "LANGUAGE",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONFAULTHANDLER",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONWARNINGS",
        "PYTHONMALLOC",
        "PYTHONDEVMODE",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "MALLOC_ARENA_MAX",
        "LD_LIBRARY_PATH",
        "RAGSTREAM_OCR_LANGUAGES",  # not a secret: which Tesseract languages read scans
    }
)


def scrubbed_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` a parser may see: an allow-list, nothing else."""
    return {
        key: value for key, value in environ.items() if key in _ALLOWED_ENV or key.startswith("LC_")
    }


def scrub_environ() -> None:
    """Drop from ``os.environ`` what :func:`scrubbed_environ` would not pass on."""
    keep = scrubbed_environ(os.environ)
    for key in list(os.environ):
        if key not in keep:
            del os.environ[key]


# --- kernel interfaces ---------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, loaded when first needed (in the fork server: Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    return libc


_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENIED_SYSCALLS = {  # socket, io_uring_setup, ptrace, process_vm_readv, process_vm_writev
    "x86_64": (41, 425, 101, 310, 311),
    "aarch64": (198, 425, 117, 270, 271),
}
_X32_SYSCALL_BIT = 0x40000000
_LANDLOCK_CREATE_RULESET, _LANDLOCK_RESTRICT_SELF = 444, 446  # on every architecture
_LANDLOCK_CREATE_RULESET_VERSION = 1


def _syscall(number: int, *args: int | ctypes.Array[ctypes.c_char] | None) -> int:
    """A raw system call, every integer passed as a full register's worth."""
    return int(
        _libc().syscall(
            ctypes.c_long(number),
            *(ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args),
        )
    )


def _machine() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _errno_error(what: str) -> OSError:
    number = ctypes.get_errno()
    return OSError(number, f"{what}: {os.strerror(number)}")


def _no_new_privs() -> None:
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _errno_error("prctl(PR_SET_NO_NEW_PRIVS)")


# --- network namespace ---------------------------------------------------------


def isolate_network() -> str | None:
    """Move this process into a network namespace of its own: no interface but a
    loopback that is down. Must run while the process has a single thread.

    Returns how, or ``None`` when the kernel or the container refuses.
    """
    if _libc().unshare(_CLONE_NEWNET) == 0:
        return "network namespace"
    uid, gid = os.getuid(), os.getgid()
    if _libc().unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return None
    # Map our ids onto themselves, so that files and processes keep their owners.
    try:
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", f"{uid} {uid} 1"),
            ("/proc/self/gid_map", f"{gid} {gid} 1"),
        ):
            with open(path, "w") as file:
                file.write(text)
    except OSError:
        pass  # unmapped, we show as "nobody": harmless for a process that only reads
    return "network namespace (in a user namespace)"


# --- capabilities --------------------------------------------------------------

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4


def drop_capabilities() -> str | None:
    """Give up every capability (root stays uid 0 but is no more than its files' owner):
    the kernel then checks this process like any other. ``None`` if it had none."""
    packed = struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0)  # struct __user_cap_header
    header = ctypes.create_string_buffer(packed, len(packed))  # the kernel may write to it
    data = ctypes.create_string_buffer(24)  # struct __user_cap_data[2]
    if _libc().capget(header, data) != 0:
        raise _errno_error("capget")
    if not any(data.raw):
        return None
    _libc().prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for capability in range(64):  # the bounding set (numbers the kernel lacks: EINVAL)
        _libc().prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)
    if _libc().capset(header, ctypes.create_string_buffer(24)) != 0:
        raise _errno_error("capset")
    return "no capabilities"


_PR_SET_DUMPABLE = 4


def keep_children_out() -> None:
    """Make this process non-dumpable: its ``/proc/<pid>`` entries (``environ``, ``mem``)
    become root's, and a process of the same user without capabilities, such as a
    parser, may no longer read them. For the worker, where its parsers are not under
    Landlock. The cost: no core dumps, and debuggers need root."""
    if _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise _errno_error("prctl(PR_SET_DUMPABLE)")


# --- Landlock ------------------------------------------------------------------

_FS_WRITE = (
    (1 << 1)  # WRITE_FILE
    | (1 << 4)  # REMOVE_DIR
    | (1 << 5)  # REMOVE_FILE
    | (1 << 6)  # MAKE_CHAR
    | (1 << 7)  # MAKE_DIR
    | (1 << 8)  # MAKE_REG
    | (1 << 9)  # MAKE_SOCK
    | (1 << 10)  # MAKE_FIFO
    | (1 << 11)  # MAKE_BLOCK
    | (1 << 12)  # MAKE_SYM
)
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
_NET_TCP = (1 << 0) | (1 << 1)  # BIND_TCP, CONNECT_TCP: ABI 4
_SCOPED = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET, SIGNAL: ABI 6


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none or may not use it."""
    return max(_syscall(_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION), 0)


def landlock() -> str | None:
    """Put this process in a Landlock domain: no file writes, no access to processes
    outside the domain, and (as the ABI allows) no TCP, no abstract Unix sockets,
    no signals out. Returns what holds, or ``None``."""
    abi = landlock_abi()
    if abi < 1:
        return None
    fs = _FS_WRITE | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fields = [fs]
    held = ["no file writes", "no access to outside processes"]
    if abi >= 4:
        fields.append(_NET_TCP)
        held.append("no TCP")
    if abi >= 6:
        fields.append(_SCOPED)
        held.append("no abstract Unix sockets nor signals out")
    packed = struct.pack(f"={len(fields)}Q", *fields)  # struct landlock_ruleset_attr
    attr = ctypes.create_string_buffer(packed, len(packed))
    fd = _syscall(_LANDLOCK_CREATE_RULESET, attr, len(packed), 0)
    if fd < 0:
        return None
    try:
        _no_new_privs()
        if _syscall(_LANDLOCK_RESTRICT_SELF, fd, 0) != 0:
            return None
    finally:
        os.close(fd)
    return f"Landlock ABI {abi}: " + ", ".join(held)


# --- seccomp -------------------------------------------------------------------


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


_LD_ABS_W, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_DATA_NR, _DATA_ARCH = 0, 4  # offsets in struct seccomp_data


def _filter(machine: str, denied: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """A BPF program failing the ``denied`` system calls and any of a foreign ABI with
    ``EPERM``, as (code, jt, jf, k) instructions."""
    deny = _RET_ERRNO | errno.EPERM
    checks: list[tuple[int, int]] = []  # (jump opcode, value): to "deny" when true
    if machine == "x86_64":
        checks.append((_JGE, _X32_SYSCALL_BIT))
    checks += [(_JEQ, number) for number in denied]
    program = [
        (_LD_ABS_W, 0, 0, _DATA_ARCH),
        (_JEQ, 1, 0, _AUDIT_ARCH[machine]),
        (_RET, 0, 0, deny),  # a foreign ABI: nothing of it is ours
        (_LD_ABS_W, 0, 0, _DATA_NR),
    ]
    deny_at = len(program) + len(checks) + 1
    for opcode, value in checks:
        program.append((opcode, deny_at - len(program) - 1, 0, value))
    program += [(_RET, 0, 0, _RET_ALLOW), (_RET, 0, 0, deny)]
    return program


def deny_syscalls(denied: Sequence[int]) -> bool:
    """Install a seccomp filter failing ``denied`` (numbers of this machine) and every
    system call of a foreign ABI, for this process and all it forks or executes.
    False where this machine is not one the filter knows."""
    machine = _machine()
    if machine not in _AUDIT_ARCH:
        return False
    program = _filter(machine, denied)
    instructions = (_SockFilter * len(program))(*(_SockFilter(*i) for i in program))
    prog = _SockFprog(len(program), instructions)
    _no_new_privs()
    result = _libc().prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)
    return int(result) == 0


def deny_sockets() -> str | None:
    """Install the seccomp filter described in the module's documentation (for this
    process and whatever it forks). Returns what holds, or ``None``."""
    denied = _DENIED_SYSCALLS.get(_machine())
    if denied is None or not deny_syscalls(denied):
        return None
    return "seccomp: no socket(), io_uring, ptrace nor foreign ABIs"


def confine() -> list[str]:
    """No capabilities, Landlock, then the seccomp filter, where each works: what holds."""
    held = []
    for layer in (drop_capabilities, landlock, deny_sockets):
        try:
            result = layer()
        except OSError:
            result = None
        if result is not None:
            held.append(result)
    return held


# --- observation ---------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"error: {type(exc).__name__}: {exc}"


def _opens(path: str) -> str:
    try:
        with open(path, "rb"):
            return "opened"
    except OSError as exc:
        return f"error: {type(exc).__name__}: {exc}"


def observe(worker_pid: int, port: int) -> dict[str, str]:
    """What this process can see: its environment, the environment of its parent
    (the fork server) and of ``worker_pid``; whether it can create a temporary file
    and whether 127.0.0.1:``port`` answers."""
    facts = {
        "environ": "\0".join(f"{key}={value}" for key, value in os.environ.items()),
        "self_environ": _read("/proc/self/environ"),
        "parent_environ": _read(f"/proc/{os.getppid()}/environ"),
        "worker_environ": _read(f"/proc/{worker_pid}/environ"),
        "worker_mem": _opens(f"/proc/{worker_pid}/mem"),
    }
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ragstream-probe-{os.getpid()}")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(path)
        facts["write"] = "written"
    except OSError as exc:
        facts["write"] = f"error: {type(exc).__name__}: {exc}"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            facts["connect"] = "connected"
    except OSError as exc:
        facts["connect"] = f"error: {type(exc).__name__}: {exc}"
    return facts
