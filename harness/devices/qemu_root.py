"""The arm64 Debian root an ``aarch64-qemu`` device runs the runner in.

``harness devices setup NAME`` builds it once with the distribution's tools, in steps that
each leave a stamp (what the step was built from), so an interrupted setup resumes at the
step it stopped in and a changed input redoes that step and the ones after it:

1. ``debootstrap``: its first stage (``--foreign``) for arm64: Debian's required packages
   and python3, from the mirror apt on this machine is configured with.
2. ``unpack``: the rest of what debootstrap fetched. Its second stage would configure the
   packages by running arm64 programs in a chroot, which needs binfmt_misc to hand them to
   qemu; containers often have none, and Python needs no maintainer script to run, so the
   packages are unpacked from the host (keeping merged-/usr's directory symlinks).
3. ``cpu``: the root's ``/proc/cpuinfo`` as the emulated CPU shows it. qemu-user passes
   ``/proc`` through from the host, so the runtimes' CPU probing (pytorch's cpuinfo inside
   onnxruntime) would read an x86 file and crash; this one is made from the hardware
   capabilities qemu gives the emulated CPU (read from ``/proc/self/auxv`` under qemu).
4. ``onnxruntime``: the runtime's cp311 manylinux aarch64 wheel and numpy, at the versions
   this machine exports with, installed from the host (``pip --platform --target``): no
   pip runs under emulation.
5. ``executorch`` (only when asked for, ``--executorch``): executorch and torch. PyPI's
   aarch64 torch is its CUDA build, so this pulls about 2.7 GB of wheels.
6. ``bytecode``: ``compileall`` by the root's own Python, so a runner start compiles nothing.
7. ``check``: numpy and each runtime imported under qemu; records their versions.

A run is ``qemu-aarch64-static -cpu CPU -L ROOT ROOT/usr/bin/python3 -I RUNNER JOB RESULT``:
``-L`` looks every absolute path up in the root first and on the host after, so the
runner, its job and the artifact are read where the host wrote them, and no binfmt_misc,
chroot or root privileges are needed to run (only debootstrap needs root, to build).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.devices.config import DeviceProfile, QemuProfile, QemuSettings
from harness.errors import HarnessError
from harness.runner import RUNNER_PATH

Progress = Callable[[str], None]

QEMU_BINARIES = ("qemu-aarch64-static", "qemu-aarch64")
DEBIAN_ARCH = "arm64"
# Release names debootstrap knows for Debian, to tell a Debian mirror in apt's sources
# from other vendors' repositories (which also say "main").
_DEBIAN_SUITES = frozenset(
    "buster bullseye bookworm trixie forky duke sid stable testing unstable oldstable "
    "oldoldstable".split()
)
_DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Used when this machine has no such package installed (the versions the issue names).
_DEFAULT_VERSIONS = {"onnxruntime": "1.31.1", "numpy": "2.4.6", "executorch": "1.5.1"}
EXECUTORCH_SIZE_NOTE = (
    "executorch and PyPI's aarch64 torch, which is torch's CUDA build: about 2.7 GB of "
    "wheels to download and a 5.3 GB root"
)
TIMING_NOTE = "not meaningful under qemu"

# Linux's arm64 HWCAP and HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h), in order.
_HWCAP = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt "
    "fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
    "sb paca pacg"
).split()
_HWCAP2 = (
    "dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm "
    "svef64mm svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 "
    "smei8i32 smef16f32 smeb16f32 smef32f32 smefa64 wfxt ebf16"
).split()
# MIDR fields (implementer, variant, part, revision) of qemu's CPU models, as the real
# cores report them, so the runtimes' CPU tables recognise the core.
_MIDR = {
    "cortex-a35": (0x41, 0x0, 0xD04, 0),
    "cortex-a53": (0x41, 0x0, 0xD03, 4),
    "cortex-a57": (0x41, 0x1, 0xD07, 0),
    "cortex-a72": (0x41, 0x0, 0xD08, 3),
    "cortex-a76": (0x41, 0x4, 0xD0B, 1),
    "neoverse-n1": (0x41, 0x4, 0xD0C, 1),
    "a64fx": (0x46, 0x1, 0x001, 0),
}


class SetupError(HarnessError):
    """The root cannot be built here; the message says what is missing and what to do."""


@dataclass(frozen=True)
class RootLayout:
    """Where one device's root and its caches live (``base`` = the cache directory)."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def debs(self) -> Path:
        return self.base / "debs"

    @property
    def wheels(self) -> Path:
        return self.base / "wheels"

    @property
    def log(self) -> Path:
        return self.base / "setup.log"

    def stamp(self, step: str) -> Path:
        return self.state / f"{step}.json"

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / "python3"


def cache_base() -> Path:
    """``$HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/harness``, else ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "harness"


def settings_of(profile: DeviceProfile) -> QemuSettings:
    return profile.qemu or QemuSettings()


def layout_of(profile: DeviceProfile) -> RootLayout:
    settings = settings_of(profile)
    if settings.root_dir:
        return RootLayout(Path(settings.root_dir).expanduser())
    return RootLayout(cache_base() / profile.name)


def find_qemu() -> str | None:
    for name in QEMU_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def host_cpus() -> int:
    """How many CPUs the host's sysfs lists as possible (what cpuinfo counts)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        last = max(int(part.split("-")[-1]) for part in text.split(","))
        return last + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def runner_prefix(profile: DeviceProfile, qemu: str | None = None) -> list[str]:
    """The command that runs the root's Python under qemu (the runner file follows)."""
    binary = qemu or find_qemu()
    if binary is None:
        raise SetupError(_NO_QEMU)
    lay = layout_of(profile)
    # -I: none of this process's PYTHON* variables (a host PYTHONPATH would put x86
    # packages on the path) and no user site.
    cpu = settings_of(profile).cpu
    return [binary, "-cpu", cpu, "-L", str(lay.root), str(lay.python), "-I"]


_NO_QEMU = "no qemu-aarch64-static (or qemu-aarch64) on PATH: apt-get install qemu-user-static"


# --- apt's mirror ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    file: str


def apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """The ``deb`` entries of sources.list and sources.list.d (one-line and deb822)."""
    files = [etc_apt / "sources.list"]
    directory = etc_apt / "sources.list.d"
    if directory.is_dir():
        files += sorted(directory.glob("*.list")) + sorted(directory.glob("*.sources"))
    out: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        parse = _deb822_entries if path.suffix == ".sources" else _one_line_entries
        out += parse(text, str(path))
    return out


def _one_line_entries(text: str, file: str) -> list[AptSource]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # [arch=... signed-by=...]
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            out.append(AptSource(words[1], (words[2],), tuple(words[3:]), file))
    return out


def _deb822_entries(text: str, file: str) -> list[AptSource]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(
                AptSource(
                    uri,
                    tuple(fields.get("suites", "").split()),
                    tuple(fields.get("components", "").split()),
                    file,
                )
            )
    return out


def debian_mirror(settings: QemuSettings, etc_apt: Path = Path("/etc/apt")) -> str:
    """The profile's mirror, else the first Debian release entry of apt's sources."""
    if settings.mirror:
        return settings.mirror
    sources = apt_sources(etc_apt)
    for source in sources:
        if "main" in source.components and set(source.suites) & _DEBIAN_SUITES:
            return source.uri
    seen = ", ".join(f"{s.uri} {' '.join(s.suites)} ({s.file})" for s in sources) or "none"
    raise SetupError(
        f"no Debian mirror in apt's sources under {etc_apt} (a 'deb' entry of a Debian "
        f"release with component main; found: {seen}): set qemu.mirror in the profile"
    )


# --- building --------------------------------------------------------------------------------


@dataclass
class _Step:
    name: str
    title: str
    key: Callable[[], dict[str, Any]]
    run: Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class SetupReport:
    layout: RootLayout
    ran: tuple[str, ...]
    reused: tuple[str, ...]
    seconds: float
    size_mb: float
    runtimes: dict[str, str]


@dataclass
class _Builder:
    profile: DeviceProfile
    executorch: bool
    on_progress: Progress
    layout: RootLayout = field(init=False)
    settings: QemuSettings = field(init=False)
    qemu: str = field(init=False)

    def __post_init__(self) -> None:
        self.layout = layout_of(self.profile)
        self.settings = settings_of(self.profile)

    # -- tools

    def check_qemu(self) -> None:
        qemu = find_qemu()
        if qemu is None:
            raise SetupError(_NO_QEMU)
        self.qemu = qemu

    def check_debootstrap(self) -> None:
        """What building the root's Debian part needs (a built root needs none of it)."""
        missing = [t for t in ("debootstrap", "dpkg-deb", "tar") if shutil.which(t) is None]
        if missing:
            raise SetupError(
                f"{', '.join(missing)} not on PATH: apt-get install debootstrap "
                "(Debian's tools build the arm64 root)"
            )
        if os.geteuid() != 0:
            raise SetupError(
                "debootstrap needs root to build the arm64 root (it creates device nodes and "
                "owns files as root); run `harness devices setup` as root once; running "
                "cells afterwards needs no root"
            )
        if not _DEBIAN_KEYRING.is_file():
            raise SetupError(
                f"{_DEBIAN_KEYRING} is missing, so the packages cannot be verified: "
                "apt-get install debian-archive-keyring"
            )

    # -- running things, with the output in setup.log and a heartbeat as progress

    def command(self, argv: list[str], what: str, timeout_s: float = 3600) -> str:
        """Run ``argv``; its output goes to setup.log, its latest line to the progress
        every 15 s; a failure raises with the tail of the output."""
        with open(self.layout.log, "a") as log:
            log.write(f"\n$ {' '.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            lines: list[str] = []
            last = [time.monotonic()]

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    lines.append(line.rstrip())
                    if time.monotonic() - last[0] > 15:
                        last[0] = time.monotonic()
                        self.on_progress(f"      … {what}: {line.strip()[:100]}")

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise SetupError(
                    f"{what} took more than {timeout_s:.0f} s; see {self.layout.log}"
                ) from None
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            reader.join(10)
        if proc.returncode != 0:
            tail = "\n".join(lines[-15:])
            raise SetupError(
                f"{what} failed (exit {proc.returncode}); the end of its output "
                f"(all of it in {self.layout.log}):\n{tail}"
            )
        return "\n".join(lines)

    def under_qemu(self, code: str, what: str, timeout_s: float = 1800) -> str:
        argv = [
            self.qemu,
            "-cpu",
            self.settings.cpu,
            "-L",
            str(self.layout.root),
            str(self.layout.python),
            "-I",
            "-c",
            code,
        ]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise SetupError(f"{what} under qemu took more than {timeout_s:.0f} s") from None
        with open(self.layout.log, "a") as log:
            log.write(f"\n$ {' '.join(argv[:-1])} <code>\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            raise SetupError(
                f"{what} failed under qemu (exit {proc.returncode}): "
                f"{_qemu_failure(proc.stderr, self.settings.cpu)}"
            )
        return proc.stdout

    # -- the steps

    def steps(self) -> list[_Step]:
        steps = [
            _Step(
                "debootstrap",
                "Debian's base and python3 for arm64",
                self.key_debootstrap,
                self.run_debootstrap,
            ),
            _Step("unpack", "the remaining packages", lambda: {}, self.run_unpack),
            _Step("cpu", "the emulated CPU's /proc/cpuinfo", self.key_cpu, self.run_cpu),
            _Step(
                "onnxruntime",
                "onnxruntime and numpy (cp311 aarch64 wheels)",
                self.key_onnxruntime,
                self.run_onnxruntime,
            ),
        ]
        if self.executorch or self.layout.stamp("executorch").is_file():
            steps.append(
                _Step(
                    "executorch",
                    f"ExecuTorch ({EXECUTORCH_SIZE_NOTE})",
                    self.key_executorch,
                    self.run_executorch,
                )
            )
        steps += [
            _Step(
                "bytecode", "bytecode, compiled by the root's Python", lambda: {}, self.run_bytecode
            ),
            _Step("check", "the runtimes import under qemu", lambda: {}, self.run_check),
        ]
        return steps

    def key_debootstrap(self) -> dict[str, Any]:
        return {
            "release": self.settings.release,
            "mirror": debian_mirror(self.settings),
            "arch": DEBIAN_ARCH,
            "variant": "minbase",
            "include": ["python3"],
        }

    def run_debootstrap(self, key: dict[str, Any]) -> None:
        root = self.layout.root
        if root.exists():
            self.on_progress(f"      a half-built root is at {root}: removing it, starting again")
            shutil.rmtree(root)
        self.layout.debs.mkdir(parents=True, exist_ok=True)
        self.command(
            [
                "debootstrap",
                "--foreign",
                f"--arch={DEBIAN_ARCH}",
                "--variant=minbase",
                "--include=" + ",".join(key["include"]),
                f"--cache-dir={self.layout.debs}",
                f"--keyring={_DEBIAN_KEYRING}",
                key["release"],
                str(root),
                key["mirror"],
            ],
            "debootstrap",
        )

    def run_unpack(self, key: dict[str, Any]) -> dict[str, Any]:
        root = self.layout.root
        meta = root / "debootstrap"
        base = (meta / "base").read_text().split()
        paths = dict(
            line.split(None, 1) for line in (meta / "debpaths").read_text().splitlines() if line
        )
        for package in base:
            deb = root / paths[package].strip().lstrip("/")
            if not deb.is_file():  # a second unpack: the root's copies were removed
                deb = self.layout.debs / deb.name
            # What debootstrap itself does: dpkg-deb's data through tar, keeping the
            # /lib -> usr/lib symlinks of merged /usr instead of replacing them.
            data = subprocess.Popen(
                ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
            )
            tar = subprocess.run(
                ["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
                stdin=data.stdout,
                capture_output=True,
                text=True,
            )
            assert data.stdout is not None
            data.stdout.close()
            if data.wait() != 0 or tar.returncode != 0:
                raise SetupError(f"unpacking {deb.name} failed: {tar.stderr.strip()[-300:]}")
        # The .deb files stay in the cache beside the root, not in it.
        for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            deb.unlink()
        if not self.layout.python.exists():
            raise SetupError(f"no python3 in the root after unpacking ({self.layout.python})")
        return {"packages": len(base), "python": self.python_version()}

    def python_version(self) -> str:
        target = os.readlink(self.layout.python)  # python3 -> python3.11
        match = re.fullmatch(r"python(\d+\.\d+)", Path(target).name)
        if not match:
            raise SetupError(f"{self.layout.python} points at {target!r}, not pythonX.Y")
        return match.group(1)

    def key_cpu(self) -> dict[str, Any]:
        return {"cpu": self.settings.cpu, "processors": host_cpus(), "layout": 2}

    def run_cpu(self, key: dict[str, Any]) -> dict[str, Any]:
        out = self.under_qemu(
            "import struct\n"
            "a = dict(struct.iter_unpack('<QQ', open('/proc/self/auxv', 'rb').read()))\n"
            "print(a.get(16, 0), a.get(26, 0))",
            f"reading the hardware capabilities of qemu's {self.settings.cpu}",
        )
        hwcap, hwcap2 = (int(v) for v in out.split())
        features = hwcap_features(hwcap, hwcap2)
        wanted = set(self.profile.hardware.cpu_features)
        missing = sorted(wanted - set(features))
        if missing:
            raise SetupError(
                f"qemu.cpu = {self.settings.cpu!r} emulates a CPU without "
                f"{', '.join(missing)}, which hardware.cpu_features of {self.profile.name} "
                "lists: artifacts built for the board would use instructions it lacks; "
                "choose the board's core (qemu-aarch64-static -cpu help)"
            )
        proc = self.layout.root / "proc"
        if proc.is_symlink() or proc.is_file():
            proc.unlink()
        proc.mkdir(exist_ok=True)
        text = cpuinfo_text(self.settings.cpu, features, key["processors"])
        tmp = proc / "cpuinfo.tmp"
        tmp.write_text(text)
        os.replace(tmp, proc / "cpuinfo")
        return {"features": features}

    def versions(self) -> dict[str, str]:
        out = {}
        for name in ("onnxruntime", "numpy", "executorch", "torch"):
            try:
                out[name] = metadata.version(name).split("+")[0]  # 2.13.0+cpu -> 2.13.0
            except metadata.PackageNotFoundError:
                if name in _DEFAULT_VERSIONS:
                    out[name] = _DEFAULT_VERSIONS[name]
        return out

    def site_packages(self) -> Path:
        return self.layout.root / "usr/local/lib" / f"python{self.python_version()}/dist-packages"

    def key_onnxruntime(self) -> dict[str, Any]:
        v = self.versions()
        return {
            "python": self.python_version(),
            "requirements": [f"onnxruntime=={v['onnxruntime']}", f"numpy=={v['numpy']}"],
        }

    def run_onnxruntime(self, key: dict[str, Any]) -> None:
        site = self.site_packages()
        if site.exists():
            shutil.rmtree(site)
        self.pip_install(key["requirements"], key["python"], site)

    def key_executorch(self) -> dict[str, Any]:
        v = self.versions()
        if "torch" not in v:
            raise SetupError("torch is not installed on this machine: its version is the root's")
        return {
            "python": self.python_version(),
            "requirements": [f"executorch=={v['executorch']}", f"torch=={v['torch']}"],
        }

    def run_executorch(self, key: dict[str, Any]) -> None:
        site = self.site_packages()
        executorch, torch = key["requirements"]
        # executorch's own requirements are its compiler's (coremltools, pandas ...);
        # the runner needs its runtime and torch, with torch's requirements.
        self.pip_install([executorch], key["python"], site, deps=False)
        self.pip_install([torch], key["python"], site)

    def pip_install(
        self, requirements: list[str], python: str, site: Path, deps: bool = True
    ) -> None:
        platforms: list[str] = []
        major, minor = _glibc_of_release(self.layout.root)
        for glibc_minor in range(minor, 16, -1):
            platforms += ["--platform", f"manylinux_{major}_{glibc_minor}_aarch64"]
        platforms += ["--platform", "manylinux2014_aarch64"]
        common = [
            *platforms,
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            *([] if deps else ["--no-deps"]),
        ]
        pip = [sys.executable, "-m", "pip"]
        if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
            raise SetupError(
                f"{sys.executable} has no pip, which fetches the aarch64 wheels: "
                f"{sys.executable} -m ensurepip"
            )
        self.layout.wheels.mkdir(parents=True, exist_ok=True)
        names = " ".join(requirements)
        self.command(
            [*pip, "download", "-d", str(self.layout.wheels), *common, *requirements],
            f"pip download {names}",
        )
        site.mkdir(parents=True, exist_ok=True)
        self.command(
            [
                *pip,
                "install",
                "--no-index",
                "--find-links",
                str(self.layout.wheels),
                "--target",
                str(site),
                "--no-compile",
                *common,
                *requirements,
            ],
            f"pip install {names}",
        )

    def run_bytecode(self, key: dict[str, Any]) -> dict[str, Any]:
        version = self.python_version()
        dirs = [
            self.layout.root / "usr/lib" / f"python{version}",
            self.site_packages(),
        ]
        paths = [str(d) for d in dirs]
        # A file this Python cannot compile is left to compile on import, if it ever is
        # imported (torch ships Python-3.12-only test helpers): it fails nothing.
        out = self.under_qemu(
            "import compileall\n"
            f"for d in {paths!r}:\n"
            "    compileall.compile_dir(d, quiet=1, workers=0)\n",
            "compiling the bytecode",
        )
        failed = re.findall(r"^\*\*\* Error compiling '([^']+)'", out, flags=re.MULTILINE)
        if failed:
            self.on_progress(
                f"      {len(failed)} file(s) this Python cannot compile, left as source "
                f"(e.g. {failed[0]})"
            )
        return {"not_compiled": failed}

    def run_check(self, key: dict[str, Any]) -> dict[str, Any]:
        runtimes = ["onnxruntime"]
        if self.layout.stamp("executorch").is_file():
            runtimes.append("executorch")
        # The runner's own import (it loads executorch's runtime without its compiler),
        # so what passes here is what a cell does.
        code = (
            "import json, runpy\n"
            "from importlib import metadata\n"
            f"runner = runpy.run_path({str(RUNNER_PATH)!r})\n"
            f"for name in {runtimes!r}:\n"
            "    runner['import_runtime'](name)\n"
            "import numpy\n"
            f"print(json.dumps({{n: metadata.version(n) for n in {['numpy', *runtimes]!r}}}))"
        )
        out = self.under_qemu(code, "importing " + ", ".join(["numpy", *runtimes]))
        versions = json.loads(out.strip().splitlines()[-1])
        return {
            "cpu": self.settings.cpu,
            "processors": host_cpus(),
            "python": self.python_version(),
            "versions": versions,
            "runtimes": runtimes,
        }

    # -- the walk over the steps

    def build(self, rebuild: bool) -> SetupReport:
        started = time.monotonic()
        self.check_qemu()
        self.layout.base.mkdir(parents=True, exist_ok=True)
        ran: list[str] = []
        reused: list[str] = []
        with _locked(self.layout.base / "lock", self.on_progress):
            if rebuild:
                self.on_progress("--rebuild: forgetting every step (the downloads are kept)")
                shutil.rmtree(self.layout.state, ignore_errors=True)
            self.layout.state.mkdir(parents=True, exist_ok=True)
            steps = self.steps()
            redo = False
            for index, step in enumerate(steps, start=1):
                label = f"[{index}/{len(steps)}] {step.name}: {step.title}"
                key = step.key()
                stamp = _read_stamp(self.layout.stamp(step.name))
                if not redo and stamp is not None and stamp.get("key") == key:
                    reused.append(step.name)
                    self.on_progress(f"{label}: done earlier")
                    continue
                redo = True  # every later step builds on this one
                for later in steps[index - 1 :]:
                    self.layout.stamp(later.name).unlink(missing_ok=True)
                if step.name in ("debootstrap", "unpack"):
                    self.check_debootstrap()
                self.on_progress(f"{label} ...")
                step_started = time.monotonic()
                facts = step.run(key) or {}
                _write_stamp(self.layout.stamp(step.name), {"key": key, "facts": facts})
                ran.append(step.name)
                self.on_progress(f"      done in {time.monotonic() - step_started:.0f} s")
        status = root_status(self.profile)
        return SetupReport(
            layout=self.layout,
            ran=tuple(ran),
            reused=tuple(reused),
            seconds=time.monotonic() - started,
            size_mb=_tree_mb(self.layout.root),
            runtimes=status.runtimes,
        )


def setup_root(
    profile: DeviceProfile,
    *,
    executorch: bool = False,
    rebuild: bool = False,
    on_progress: Progress = print,
) -> SetupReport:
    """Build (or finish, or check) the root of an ``aarch64-qemu`` profile."""
    if not isinstance(profile, QemuProfile):
        raise SetupError(
            f"device {profile.name} is {profile.kind!r}: only aarch64-qemu devices are set up"
        )
    return _Builder(profile, executorch, on_progress).build(rebuild)


def hwcap_features(hwcap: int, hwcap2: int) -> list[str]:
    """The /proc/cpuinfo feature names of AT_HWCAP and AT_HWCAP2, as Linux lists them."""
    features = [name for bit, name in enumerate(_HWCAP) if hwcap >> bit & 1]
    return features + [name for bit, name in enumerate(_HWCAP2) if hwcap2 >> bit & 1]


def cpuinfo_text(cpu: str, features: list[str], processors: int) -> str:
    implementer, variant, part, revision = _MIDR.get(cpu, (0x00, 0x0, 0x000, 0))
    block = (
        "processor\t: {n}\n"
        "BogoMIPS\t: 50.00\n"
        f"Features\t: {' '.join(features)}\n"
        f"CPU implementer\t: 0x{implementer:02x}\n"
        "CPU architecture: 8\n"
        f"CPU variant\t: 0x{variant:x}\n"
        f"CPU part\t: 0x{part:03x}\n"
        f"CPU revision\t: {revision}\n\n"
    )
    # As a Raspberry Pi's ends: the runner reports this line as the CPU model.
    model = f"Model\t\t: qemu-aarch64 -cpu {cpu}\n"
    return "".join(block.format(n=n) for n in range(processors)) + model


def _glibc_of_release(root: Path) -> tuple[int, int]:
    """glibc's version in the root (bookworm: 2.36), the newest manylinux tag it runs."""
    try:
        text = (root / "usr/lib/aarch64-linux-gnu/libc.so.6").read_bytes()
    except OSError:
        return (2, 17)
    found = re.findall(rb"GLIBC_(\d+)\.(\d+)", text)
    return max((int(a), int(b)) for a, b in found) if found else (2, 17)


def _qemu_failure(stderr: str, cpu: str) -> str:
    text = stderr.strip()
    if "unable to find CPU model" in text:
        return (
            f"qemu has no CPU model {cpu!r}: set qemu.cpu to one of `qemu-aarch64-static -cpu help`"
        )
    if "Segmentation fault" in text or "signal 11" in text:
        return f"the emulated program crashed: {text[-600:]}"
    return text[-600:] or "(no output)"


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _tree_mb(path: Path) -> float:
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total / 1e6


@contextlib.contextmanager
def _locked(path: Path, on_progress: Progress) -> Iterator[None]:
    """One setup of a root at a time (a test session and the command line, say)."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_progress(f"another setup of this root is running (lock {path}): waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- what a device and `devices check` read --------------------------------------------------


@dataclass(frozen=True)
class RootStatus:
    layout: RootLayout
    ready: bool
    problem: str  # why it cannot run ("" when ready)
    runtimes: dict[str, str]  # runtime -> version in the root
    facts: dict[str, Any]


def root_status(profile: DeviceProfile) -> RootStatus:
    """Whether the root is built for this profile on this machine (cheap: stamps only)."""
    lay = layout_of(profile)
    stamp = _read_stamp(lay.stamp("check"))
    if stamp is None or not lay.python.exists():
        where = "no root" if not lay.root.exists() else "a root that is not finished"
        return RootStatus(lay, False, f"{where} at {lay.root}", {}, {})
    facts = stamp.get("facts") or {}
    versions = facts.get("versions") or {}
    runtimes = {r: versions.get(r, "?") for r in facts.get("runtimes", [])}
    cpu = settings_of(profile).cpu
    if facts.get("cpu") != cpu:
        return RootStatus(
            lay,
            False,
            f"the root at {lay.root} was set up for qemu.cpu {facts.get('cpu')!r}, "
            f"the profile says {cpu!r}",
            runtimes,
            facts,
        )
    if facts.get("processors") != host_cpus():
        return RootStatus(
            lay,
            False,
            f"the root's /proc/cpuinfo lists {facts.get('processors')} CPUs, this "
            f"machine has {host_cpus()}",
            runtimes,
            facts,
        )
    return RootStatus(lay, True, "", runtimes, facts)
