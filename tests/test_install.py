"""`scripts/install --root DIR` (issue 6, acceptance 5): a working tree, and a second run that
changes nothing.

The install is the real one: a venv made by Debian's /usr/bin/python3 and `pip install` of this
source (not editable; dependencies from the configured index), the config, the key file, the
unit. Only what needs a live system is left out by --root (packages, the user, systemctl). The
tree is then used as the installed program would be: its own `omnid check-config` reads its own
config and finds the key through $CREDENTIALS_DIRECTORY, and `systemd-analyze verify --root`
finds the unit's ExecStart where the installer put it.

One tree is shared by the tests in this file (the pip install is the slow part, ~10 s here):
first install without a key, then with one, then again (nothing changes), then with a new key
(only the key changes), then from changed source (only the venv changes), then uninstall. Each
test brings the shared tree to the state it starts from (`Tree.installed`, `with_key`,
`without_key`: no-ops when the tests run in file order), so any one of them also passes alone
(`-k`) or after any other: none relies on what an earlier test happened to leave behind.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, clean_env
from tests.secret_guard import assert_no_secret, make_key

INSTALL = ROOT / "scripts" / "install"
UNINSTALL = ROOT / "scripts" / "uninstall"
PYTHON = Path(os.environ.get("INSTALL_TEST_PYTHON", "/usr/bin/python3"))
VOLATILE = {"__pycache__"}  # byte-code caches Python may write when the program runs


def _python_problem() -> str | None:
    if not PYTHON.exists():
        return f"{PYTHON} not found: the installer builds its venv with Debian's python3"
    done = subprocess.run([str(PYTHON), "-c", "import ensurepip, venv"], capture_output=True)
    if done.returncode != 0:
        return f"{PYTHON} cannot make venvs (Debian package python3-venv)"
    return None


pytestmark = pytest.mark.skipif((why := _python_problem()) is not None, reason=why or "")


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under root: type, mode, owner, mtime and content hash (or link target)."""
    found: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in VOLATILE]
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = ("file", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, digest)
    return found


def changed(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def snapshot_source(dest: Path) -> Path:
    """A copy of what the installer reads from a checkout. Other work goes on in the checkout while
    the tests run; installing from a fixed copy keeps "the source did not change" true between
    runs."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "omnid", "config", "systemd"):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, dest / name)
    return dest


class Tree:
    """The shared install tree, what each run printed, and the states the tests start from."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.src = snapshot_source(base / "src")
        self.root = base / "root"
        self.key = make_key()
        self.key_file = base / "key"
        self.key_file.write_text(self.key + "\n")
        self.key_path = self.root / "etc/omnid/dashscope-api-key"
        self.outputs: list[str] = []
        self.first: subprocess.CompletedProcess[str] | None = None  # the run that laid it out
        self.first_s = 0.0
        self.first_paths: set[str] = set()  # what that first run left in the tree

    def installed(self) -> subprocess.CompletedProcess[str]:
        """The tree laid out from `src`. The first call makes the first install (without a key)
        and keeps its output, duration and result for the test that checks them; later calls
        install again only when the tree is gone (after the uninstall test). Returns the first
        install's run."""
        if self.first is None:
            t0 = time.monotonic()
            self.first = self.install()
            self.first_s = time.monotonic() - t0
            self.first_paths = set(snapshot(self.root))
        elif not (self.root / "opt/omnid/venv/bin/omnid").exists():
            self.install()
        return self.first

    def with_key(self) -> None:
        """Installed, with this tree's own key in place (not one another test put there)."""
        self.installed()
        if not (self.key_path.is_file() and self.key_path.read_text() == self.key + "\n"):
            self.install("--api-key-file", str(self.key_file))

    def without_key(self) -> None:
        """Installed, with no key yet: the state a first install without a key leaves."""
        self.installed()
        self.key_path.unlink(missing_ok=True)

    def install(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(INSTALL), "--root", str(self.root), "--python", str(PYTHON),
             "--source", str(self.src), *args],
            capture_output=True, text=True, timeout=600, env=clean_env(),
            stdin=subprocess.DEVNULL,  # not a TTY: the installer must not prompt
        )  # fmt: skip
        self.outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        return done


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return Tree(tmp_path_factory.mktemp("install"))


def test_first_install_without_a_key_lays_out_the_tree(tree: Tree) -> None:
    done = tree.installed()
    print(f"\nfirst install (venv + pip install): {tree.first_s:.1f} s")
    r = tree.root
    assert "no API key installed" in done.stdout
    assert "etc/omnid/dashscope-api-key" not in tree.first_paths
    assert (r / "etc/omnid/omnid.toml").read_bytes() == (
        tree.src / "config/omnid.toml"
    ).read_bytes()
    unit = r / "etc/systemd/system/omnid.service"
    assert unit.read_bytes() == (tree.src / "systemd/omnid.service").read_bytes()
    for path, mode in [
        (unit, 0o644),
        (r / "etc/omnid/omnid.toml", 0o644),
        (r / "etc/omnid", 0o755),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    omnid = r / "opt/omnid/venv/bin/omnid"
    assert omnid.is_file() and os.access(omnid, os.X_OK)
    cfg = (r / "opt/omnid/venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg  # not a Raspberry Pi
    # Not editable: the package lives in the venv, not in this checkout.
    site = list((r / "opt/omnid/venv/lib").glob("python3*/site-packages/omnid/cli.py"))
    assert len(site) == 1
    # The wake extra, where it has wheels (64-bit x86 and ARM), so wake mode works as installed.
    if platform.machine() in ("x86_64", "aarch64") and sys.maxsize > 2**32:
        wake = list(r.glob("opt/omnid/venv/lib/python3*/site-packages/pymicro_wakeword"))
        assert len(wake) == 1, done.stdout + done.stderr


def test_the_key_is_installed_root_only_and_nothing_else_changes(tree: Tree) -> None:
    tree.without_key()
    before = snapshot(tree.root)
    tree.install("--api-key-file", str(tree.key_file))
    key = tree.root / "etc/omnid/dashscope-api-key"
    st = key.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)  # LoadCredential reads it as root
    assert key.read_text() == tree.key + "\n"
    assert changed(before, snapshot(tree.root)) == {"etc/omnid", "etc/omnid/dashscope-api-key"}


def test_a_second_run_changes_nothing(tree: Tree) -> None:
    tree.with_key()  # the first run of the pair: what the second is compared with
    before = snapshot(tree.root)
    t0 = time.monotonic()
    done = tree.install("--api-key-file", str(tree.key_file))
    print(f"\nsecond install: {time.monotonic() - t0:.1f} s")
    assert changed(before, snapshot(tree.root)) == set()
    assert "up to date: nothing changed" in done.stdout


def test_the_installed_program_runs_with_its_own_config_and_key(tree: Tree) -> None:
    tree.with_key()
    r = tree.root
    creds = tree.base / "credentials"  # what systemd's LoadCredential= would hand the service
    creds.mkdir(exist_ok=True)
    shutil.copy(r / "etc/omnid/dashscope-api-key", creds / "dashscope-api-key")
    done = subprocess.run(
        [str(r / "opt/omnid/venv/bin/omnid"), "check-config", "--config",
         str(r / "etc/omnid/omnid.toml")],
        capture_output=True, text=True, timeout=60, cwd=tree.base,
        env=clean_env(CREDENTIALS_DIRECTORY=str(creds)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "api key: set (from $CREDENTIALS_DIRECTORY/dashscope-api-key)" in done.stdout
    assert_no_secret(done.stdout + done.stderr, tree.key)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_unit_verifies_against_the_installed_tree(tree: Tree) -> None:
    """ExecStart resolved under --root: the path the unit names is the one the installer made.
    /bin/kill (ExecReload) belongs to the OS, not to us: it is copied in as the OS would have it."""
    tree.installed()
    os_part = tree.base / "os-root"
    if not os_part.exists():
        shutil.copytree(tree.root, os_part, symlinks=True)
        (os_part / "usr/bin").mkdir(parents=True)
        shutil.copy2(shutil.which("kill") or "/bin/kill", os_part / "usr/bin/kill")
        (os_part / "bin").symlink_to("usr/bin")  # merged /usr, as on Debian 12
    unit = os_part / "etc/systemd/system/omnid.service"
    done = subprocess.run(
        ["systemd-analyze", "verify", "--recursive-errors=no", f"--root={os_part}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )


def test_a_new_key_replaces_only_the_key(tree: Tree) -> None:
    tree.with_key()
    before = snapshot(tree.root)
    new_key = make_key()
    (tree.base / "new-key").write_text(f"  {new_key}  \n")  # stray white space is trimmed
    tree.install("--api-key-file", str(tree.base / "new-key"))
    key = tree.root / "etc/omnid/dashscope-api-key"
    assert key.read_text() == new_key + "\n" and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert changed(before, snapshot(tree.root)) == {"etc/omnid", "etc/omnid/dashscope-api-key"}
    for text in tree.outputs:
        assert_no_secret(text, tree.key)
        assert_no_secret(text, new_key)


def test_new_source_reinstalls_the_package_and_only_that(tree: Tree) -> None:
    """An upgrade: the stamp (a hash of the package's files) differs, so the package is rebuilt
    into the same venv; the operator's config and key stay as they are."""
    tree.installed()
    marker = "# upgraded by test_install\n"
    with (tree.src / "omnid" / "__init__.py").open("a") as f:
        f.write(marker)
    before = snapshot(tree.root)
    done = tree.install()
    assert "installed omnid" in done.stdout
    (installed,) = (tree.root / "opt/omnid/venv/lib").glob("python3*/site-packages/omnid")
    assert (installed / "__init__.py").read_text().endswith(marker)
    touched = changed(before, snapshot(tree.root))
    assert touched and all(p.startswith("opt/omnid/venv") for p in touched), touched
    before = snapshot(tree.root)
    assert "up to date" in tree.install().stdout
    assert changed(before, snapshot(tree.root)) == set()


# The real path (no --root): packages, groups, the user, /opt, /etc. It runs in a private mount
# namespace whose /etc, /opt, /var and /usr are overlays on a tmpfs and whose /run is empty (so no
# systemctl reaches the host's systemd): everything it does is real and vanishes with the
# namespace. The host's user database and /etc/omnid are compared before and after.
REAL_RUN = r"""
set -euo pipefail
mount -t tmpfs tmpfs "$OVL"
for d in /etc /opt /var /usr; do
  n=${d//\//_}
  mkdir -p "$OVL/upper$n" "$OVL/work$n"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$OVL/upper$n,workdir=$OVL/work$n" "$d"
done
mount -t tmpfs tmpfs /run
"$INSTALL" --source "$SRC" --api-key-file "$KEY" >"$OUT/run1" 2>&1
"$INSTALL" --source "$SRC" --api-key-file "$KEY" >"$OUT/run2" 2>&1
id omnid >"$OUT/id"
stat -c '%a %U:%G' /etc/omnid/dashscope-api-key >"$OUT/key-stat"
test -x /opt/omnid/venv/bin/omnid
cmp /etc/systemd/system/omnid.service "$UNIT"
"$UNINSTALL" --purge >"$OUT/uninstall" 2>&1
if id omnid >/dev/null 2>&1; then echo "user still there" >&2; exit 1; fi
test ! -e /etc/omnid && test ! -e /opt/omnid
"""
PACKAGES = ["python3-venv", "libportaudio2", "libsystemd-dev", "pkg-config", "gcc"]


def _real_install_problem() -> str | None:
    if os.geteuid() != 0:
        return "the real install path needs root (it runs in a private overlay)"
    if shutil.which("unshare") is None or shutil.which("dpkg-query") is None:
        return "needs unshare(1) and dpkg-query (Debian)"

    def installed(p: str) -> bool:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout
        return "install ok installed" in status

    missing = [p for p in PACKAGES if not installed(p)]
    if missing:  # the installer would run apt-get (network, minutes): not in a unit test
        return f"Debian packages missing (scripts/setup installs them): {missing}"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:  # e.g. in a chroot, whose root is not a mount point
        return f"no private mount namespace here: {probe.stderr.strip()}"
    return None


def _host_state() -> tuple[bool, str]:
    user = subprocess.run(["getent", "passwd", "omnid"], capture_output=True, text=True).stdout
    return Path("/etc/omnid").exists(), user


@pytest.mark.skipif((why_real := _real_install_problem()) is not None, reason=why_real or "")
def test_the_real_install_path_in_a_private_overlay(tmp_path: Path) -> None:
    key = make_key()
    (tmp_path / "key").write_text(key + "\n")
    (tmp_path / "ovl").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    src = snapshot_source(tmp_path / "src")
    before = _host_state()
    env = clean_env(
        OVL=str(tmp_path / "ovl"),
        OUT=str(out),
        KEY=str(tmp_path / "key"),
        SRC=str(src),
        INSTALL=str(INSTALL),
        UNINSTALL=str(UNINSTALL),
        UNIT=str(src / "systemd/omnid.service"),
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", REAL_RUN],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    logs = {p.name: p.read_text() for p in out.iterdir()}
    assert done.returncode == 0, f"{done.stderr}\n{logs}"
    assert _host_state() == before, "the host was changed"
    run1, run2 = logs["run1"], logs["run2"]
    assert "created the system user omnid" in run1
    assert "systemd is not running here" in run1  # our /run is empty: no systemctl
    groups = logs["id"].split("groups=", 1)[1]
    for group in ("audio", "video", "gpio"):
        assert f"({group})" in groups, logs["id"]
    assert logs["key-stat"].split() == ["600", "root:root"]
    assert "up to date: nothing changed" in run2
    for text in logs.values():
        assert_no_secret(text, key)


def test_uninstall_keeps_the_operators_files_unless_purged(tree: Tree) -> None:
    tree.with_key()
    r = tree.root
    done = subprocess.run([str(UNINSTALL), "--root", str(r)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (r / "opt/omnid").exists()
    assert not (r / "etc/systemd/system/omnid.service").exists()
    assert (r / "etc/omnid/omnid.toml").exists() and (r / "etc/omnid/dashscope-api-key").exists()
    done = subprocess.run(
        [str(UNINSTALL), "--root", str(r), "--purge"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not (r / "etc/omnid").exists()
