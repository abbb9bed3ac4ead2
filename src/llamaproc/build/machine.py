"""What this machine has for building llamaproc's native extension (standard library only).

:func:`detect` probes the CPU (architecture, instruction-set extensions, cores), GPUs and their
toolkits (CUDA, ROCm, Vulkan, OpenCL, Metal), compilers, CMake and Ninja, and names known
compiler pitfalls. Every probe is bounded (subprocesses get a timeout) and none raises: what is
missing is reported as absent, and a probe that fails unexpectedly is recorded in
``Machine.problems`` instead of stopping the others.

Sources of CPU features, by platform:

* Linux: ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM); the intersection over all
  processors, so a hybrid CPU reports what every core has.
* macOS: ``sysctl hw machdep sysctl.proc_translated``.
* Elsewhere (Windows, BSDs): no feature source is read; ``CpuInfo.features_known`` is False and
  the architecture comes from :func:`platform.machine`. ``GGML_NATIVE`` still lets the compiler
  see the CPU at build time.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import platform
import re
import sys
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

#: x86 /proc/cpuinfo flags that some ggml CPU code path uses (the names Linux prints).
X86_FEATURES = ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq",
                "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
                "avx512_fp16")
#: ARM features ggml uses, named as ggml's CPU variants name them (Linux ``Features`` name -> ours).
ARM_FEATURES = {"asimd": "neon", "asimddp": "dotprod", "asimdhp": "fp16", "sve": "sve", "i8mm": "i8mm",
                "sve2": "sve2", "sme": "sme"}

_MACOS_X86 = {"SSE4.2": "sse4_2", "AVX1.0": "avx", "F16C": "f16c", "FMA": "fma", "AVX2": "avx2", "BMI2": "bmi2",
              "AVX512F": "avx512f", "AVX512CD": "avx512cd", "AVX512VL": "avx512vl", "AVX512DQ": "avx512dq",
              "AVX512BW": "avx512bw", "AVX512VBMI": "avx512vbmi", "AVX512VNNI": "avx512_vnni"}
_MACOS_ARM = {"hw.optional.neon": "neon", "hw.optional.AdvSIMD": "neon", "hw.optional.arm.FEAT_DotProd": "dotprod",
              "hw.optional.arm.FEAT_FP16": "fp16", "hw.optional.neon_fp16": "fp16", "hw.optional.arm.FEAT_I8MM": "i8mm",
              "hw.optional.arm.FEAT_SME": "sme", "hw.optional.arm.FEAT_SVE": "sve", "hw.optional.arm.FEAT_SVE2": "sve2"}
_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x61": "Apple", "0xc0": "Ampere", "0x48": "HiSilicon", "0x51": "Qualcomm",
                     "0x4e": "NVIDIA", "0x46": "Fujitsu"}
_ARM_PARTS = {"0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
              "0xd8e": "Neoverse-N3", "0xd84": "Neoverse-V3", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76",
              "0xd05": "Cortex-A55", "0xd03": "Cortex-A53", "0xd41": "Cortex-A78"}
_PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}

#: Compilers older than these cannot emit an ISA extension (gcc, clang major versions).
ISA_MIN_COMPILER = {"avx512_vnni": (8, 6), "avx512_bf16": (10, 9), "avx_vnni": (11, 12), "amx_tile": (11, 12),
                    "amx_int8": (11, 12), "amx_bf16": (11, 12)}
#: CMakeLists.txt's cmake_minimum_required.
CMAKE_MINIMUM = (3, 21)


def normalize_arch(machine: str) -> str:
    """``x86_64`` for x86-64 (AMD64, x64), ``aarch64`` for 64-bit ARM (arm64), otherwise lower case."""
    m = machine.strip().lower()
    if m in ("x86_64", "amd64", "x64", "em64t"):
        return "x86_64"
    if m in ("aarch64", "arm64", "armv8", "armv8l"):
        return "aarch64"
    return m


@dataclass(frozen=True)
class Tool:
    """A program (or Python package) and its version; ``path`` is None when it is absent."""

    name: str
    path: str | None = None
    version: str | None = None
    detail: str = ""

    @property
    def present(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if not self.present:
            return f"{self.name}: absent"
        return f"{self.name} {self.version or '(version unknown)'} ({self.path})"


@dataclass(frozen=True)
class Compiler(Tool):
    """A C or C++ compiler; ``family`` is ``gcc``, ``clang``, ``apple-clang`` or ``unknown``."""

    family: str = "unknown"

    @property
    def major(self) -> int | None:
        return _major(self.version)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU: architecture, the instruction-set extensions ggml can use, cores.

    ``features`` uses Linux's x86 flag names (``avx2``, ``avx512_vnni``, ``amx_int8``, ...) and,
    on ARM, ggml's names (``neon``, ``dotprod``, ``fp16``, ``sve``, ``i8mm``, ``sve2``, ``sme``).
    """

    arch: str
    model: str = ""
    vendor: str = ""
    features: tuple[str, ...] = ()
    features_known: bool = False
    physical_cores: int | None = None
    logical_cpus: int | None = None
    source: str = ""
    translated: bool = False  # an x86_64 process on Apple silicon (Rosetta 2)

    def has(self, *features: str) -> bool:
        return all(f in self.features for f in features)


@dataclass(frozen=True)
class Gpu:
    vendor: str  # nvidia, amd, intel, apple
    name: str
    memory_mib: int | None = None
    compute_capability: str | None = None  # NVIDIA only, e.g. "9.0"
    source: str = ""


@dataclass(frozen=True)
class Toolkit:
    """A GPU backend's build requirements (``buildable``) and a device to run it on (``runtime``)."""

    name: str
    buildable: bool = False
    version: str | None = None
    location: str | None = None
    summary: str = ""  # one line: what was found, or what is missing to build
    runtime: bool = False
    runtime_summary: str = ""  # one line: the driver/device found, or that none was
    detail: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Toolkits:
    cuda: Toolkit
    rocm: Toolkit
    vulkan: Toolkit
    opencl: Toolkit
    metal: Toolkit

    def __iter__(self) -> Iterator[Toolkit]:
        return iter((self.cuda, self.rocm, self.vulkan, self.opencl, self.metal))


@dataclass(frozen=True)
class Pitfall:
    """A known problem of this toolchain on this machine; ``handled``: the build already works around it."""

    code: str
    message: str
    handled: bool = False


@dataclass(frozen=True)
class Machine:
    """Everything :func:`detect` found. ``to_dict()`` gives plain JSON-ready data."""

    system: str  # platform.system(): Linux, Darwin, Windows, ...
    cpu: CpuInfo
    gpus: tuple[Gpu, ...]
    nvidia_driver: str | None
    toolkits: Toolkits
    compilers: tuple[Compiler, ...]
    cxx: Compiler | None  # the C++ compiler CMake will pick ($CXX, else c++, g++, clang++ on PATH)
    cmake: Tool
    ninja: Tool
    ccache: Tool
    python_packages: tuple[Tool, ...]  # scikit-build-core, nanobind, cmake, ninja in this interpreter
    pitfalls: tuple[Pitfall, ...] = ()
    problems: tuple[str, ...] = ()  # probes that failed unexpectedly (a bug here, not a missing tool)

    def python_package(self, name: str) -> Tool:
        return next((t for t in self.python_packages if t.name == name), Tool(name))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(self)
        return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, Toolkits):
        return {t.name: _plain(t) for t in obj}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list, frozenset, set)):
        return [_plain(v) for v in obj]
    return obj


# --- parsers (pure functions of text, tested against recorded samples) -----------------------

def parse_cpuinfo(text: str) -> CpuInfo:
    """A Linux ``/proc/cpuinfo``: x86 (``flags``) or ARM (``Features``)."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    procs = []
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip().lower(), value.strip())
        if "processor" in fields:
            procs.append(fields)
        elif procs:  # trailing per-system lines (ARM "Hardware", "Revision")
            for k, v in fields.items():
                procs[-1].setdefault(k, v)
    if not procs:
        return CpuInfo(arch=normalize_arch(platform.machine()), source="/proc/cpuinfo (unreadable)")
    logical = len(procs)
    if any("flags" in p for p in procs):
        flag_sets = [set(p.get("flags", "").split()) for p in procs if "flags" in p]
        flags = set.intersection(*flag_sets)
        arch = "x86_64" if "lm" in flags else "x86"
        features = tuple(f for f in X86_FEATURES if f in flags)
        cores = {(p.get("physical id", "0"), p["core id"]) for p in procs if "core id" in p}
        physical = len(cores) or logical
        return CpuInfo(arch=arch, model=procs[0].get("model name", ""), vendor=procs[0].get("vendor_id", ""),
                       features=features, features_known=True, physical_cores=physical, logical_cpus=logical,
                       source="/proc/cpuinfo")
    if any("features" in p for p in procs):
        feat_sets = [set(p.get("features", "").split()) for p in procs if "features" in p]
        raw = set.intersection(*feat_sets)
        arch_field = procs[0].get("cpu architecture", "8")
        arch = "aarch64" if (arch_field.isdigit() and int(arch_field) >= 8) or "asimd" in raw else "arm"
        ours = {ours for linux, ours in ARM_FEATURES.items() if linux in raw}
        features = tuple(f for f in ARM_FEATURES.values() if f in ours)
        impl = procs[0].get("cpu implementer", "").lower()
        part = procs[0].get("cpu part", "").lower()
        model = procs[0].get("model name", "") or _ARM_PARTS.get(part, "") or (f"part {part}" if part else "")
        return CpuInfo(arch=arch, model=model, vendor=_ARM_IMPLEMENTERS.get(impl, impl), features=features,
                       features_known=True, physical_cores=logical, logical_cpus=logical, source="/proc/cpuinfo")
    return CpuInfo(arch=normalize_arch(platform.machine()), physical_cores=logical, logical_cpus=logical,
                   source="/proc/cpuinfo (no feature lines)")


def parse_sysctl(text: str, machine: str = "") -> CpuInfo:
    """macOS ``sysctl hw machdep`` output (``name: value`` lines)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    translated = values.get("sysctl.proc_translated") == "1"
    if translated:
        arch = "x86_64"  # what this process (and so the build) runs as
    elif values.get("hw.optional.arm64") == "1" or any(k.startswith("hw.optional.arm.") for k in values):
        arch = "aarch64"
    elif "machdep.cpu.features" in values:
        arch = "x86_64"
    else:
        arch = normalize_arch(machine or platform.machine())
    feats: set[str] = set()
    if arch == "x86_64":
        tokens = (values.get("machdep.cpu.features", "") + " " + values.get("machdep.cpu.leaf7_features", "")).split()
        feats |= {_MACOS_X86[t] for t in tokens if t in _MACOS_X86}
        for key, name in (("hw.optional.avx2_0", "avx2"), ("hw.optional.avx1_0", "avx"), ("hw.optional.fma", "fma"),
                          ("hw.optional.sse4_2", "sse4_2"), ("hw.optional.bmi2", "bmi2")):
            if values.get(key) == "1":
                feats.add(name)
        order: Iterable[str] = X86_FEATURES
    else:
        feats |= {name for key, name in _MACOS_ARM.items() if values.get(key) == "1"}
        order = ARM_FEATURES.values()
    features = tuple(f for f in dict.fromkeys(order) if f in feats)
    return CpuInfo(arch=arch, model=values.get("machdep.cpu.brand_string", ""),
                   vendor=values.get("machdep.cpu.vendor", "Apple" if arch == "aarch64" else ""),
                   features=features, features_known=bool(values), physical_cores=_int(values.get("hw.physicalcpu")),
                   logical_cpus=_int(values.get("hw.logicalcpu")), source="sysctl", translated=translated)


def parse_compiler_version(text: str, name: str = "") -> tuple[str, str | None]:
    """(family, version) from ``cc --version`` output."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = re.search(r"clang version (\d+(?:\.\d+)*)", text)
    if m:
        return ("apple-clang" if "Apple" in text.split("clang version")[0] else "clang"), m.group(1)
    if "Free Software Foundation" in text or re.match(r"\S*(gcc|g\+\+|c\+\+|cc)\S* \(", first) or "gcc" in name:
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)\s*$", first) or re.search(r"\s(\d+\.\d+(?:\.\d+)?)", first)
        return "gcc", m.group(1) if m else None
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", first)
    return "unknown", m.group(1) if m else None


def parse_nvcc_version(text: str) -> str | None:
    m = re.search(r"release \d+\.\d+, V(\d+\.\d+\.\d+)", text) or re.search(r"release (\d+\.\d+)", text)
    return m.group(1) if m else None


def parse_nvidia_driver(text: str) -> str | None:
    """The driver version in ``/proc/driver/nvidia/version``."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return m.group(1) if m else None


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0]:
            continue
        cap = parts[2] if len(parts) > 2 and re.fullmatch(r"\d+\.\d+", parts[2]) else None
        gpus.append(Gpu("nvidia", parts[0], _int(parts[1]), cap, "nvidia-smi"))
    return gpus


# --- probing ---------------------------------------------------------------------------------

T = TypeVar("T")


class _Probe:
    def __init__(self, root: Path, env: Mapping[str, str], timeout: float) -> None:
        self.root = root
        self.env = dict(env)
        self.timeout = timeout
        self.problems: list[str] = []

    def at(self, path: str) -> Path:
        """A system path under ``root`` (tests point root at a fake tree)."""
        return self.root / path.lstrip("/")

    def read(self, path: str | Path, limit: int = 1 << 20) -> str | None:
        p = path if isinstance(path, Path) else self.at(path)
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                return f.read(limit)
        except OSError:
            return None

    def glob(self, pattern: str, limit: int = 256) -> list[Path]:
        return sorted(Path(p) for p in glob.glob(str(self.at(pattern))))[:limit]

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH", ""))

    def run(self, argv: list[str]) -> tuple[int, str] | None:
        """(exit status, stdout + stderr), or None when it cannot run or exceeds the timeout."""
        try:
            r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=self.timeout,
                               env=self.env, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
        return r.returncode, (r.stdout or "") + (r.stderr or "")

    def guard(self, what: str, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except Exception as exc:  # a probe must never stop detection
            self.problems.append(f"{what}: {type(exc).__name__}: {exc}")
            return default


def detect(*, root: str | os.PathLike[str] = "/", env: Mapping[str, str] | None = None, system: str | None = None,
           timeout: float = 5.0) -> Machine:
    """Probe this machine for building llamaproc (see the module docstring). Never raises.

    Args:
        root: Prefix for the fixed system paths read (``/proc``, ``/sys``, ``/opt/rocm``,
            ``/usr/include``, ...); tests point it at a fake tree.
        env: Environment for ``PATH`` look-ups, ``$CXX``, ``$CUDA_HOME``, ... and the probed
            programs (default: ``os.environ``).
        system: ``platform.system()`` to assume (default: this one's).
        timeout: Seconds each probed program may run.
    """
    probe = _Probe(Path(root), os.environ if env is None else env, timeout)
    system = system or platform.system()
    cpu = probe.guard("cpu", lambda: _cpu(probe, system), CpuInfo(arch=normalize_arch(platform.machine())))
    driver = probe.guard("nvidia driver", lambda: _nvidia_driver(probe), None)
    no_gpus: tuple[Gpu, ...] = ()
    no_compilers: tuple[Compiler, ...] = ()
    gpus = probe.guard("gpus", lambda: _gpus(probe, system, cpu, driver), no_gpus)
    compilers = probe.guard("compilers", lambda: _compilers(probe), no_compilers)
    cxx = probe.guard("c++ compiler", lambda: _cxx(probe, compilers), None)
    toolkits = Toolkits(
        cuda=probe.guard("cuda", lambda: _cuda(probe, driver, gpus), Toolkit("cuda", summary="probe failed")),
        rocm=probe.guard("rocm", lambda: _rocm(probe, gpus), Toolkit("rocm", summary="probe failed")),
        vulkan=probe.guard("vulkan", lambda: _vulkan(probe), Toolkit("vulkan", summary="probe failed")),
        opencl=probe.guard("opencl", lambda: _opencl(probe), Toolkit("opencl", summary="probe failed")),
        metal=probe.guard("metal", lambda: _metal(system, cpu), Toolkit("metal", summary="probe failed")),
    )
    cmake = probe.guard("cmake", lambda: _tool(probe, "cmake", r"cmake version (\d+(?:\.\d+)+)"), Tool("cmake"))
    ninja = probe.guard("ninja", lambda: _tool(probe, "ninja", r"^(\d+(?:\.\d+)+)", "--version"), Tool("ninja"))
    ccache = probe.guard("ccache", lambda: _tool(probe, "ccache", r"version (\d+(?:\.\d+)+)"), Tool("ccache"))
    no_packages: tuple[Tool, ...] = ()
    packages = probe.guard("python packages", _python_packages, no_packages)
    machine = Machine(system=system, cpu=cpu, gpus=gpus, nvidia_driver=driver, toolkits=toolkits,
                      compilers=compilers, cxx=cxx, cmake=cmake, ninja=ninja, ccache=ccache,
                      python_packages=packages)
    no_pitfalls: tuple[Pitfall, ...] = ()
    pitfalls = probe.guard("pitfalls", lambda: tuple(pitfalls_of(machine)), no_pitfalls)
    return dataclasses.replace(machine, pitfalls=pitfalls, problems=tuple(probe.problems))


def _cpu(probe: _Probe, system: str) -> CpuInfo:
    if system == "Linux":
        text = probe.read("/proc/cpuinfo")
        if text:
            return parse_cpuinfo(text)
    if system == "Darwin":
        sysctl = probe.which("sysctl") or ("/usr/sbin/sysctl" if probe.root == Path("/") else None)
        out = probe.run([sysctl, "hw", "machdep", "sysctl.proc_translated"]) if sysctl else None
        if out and out[1].strip():
            return parse_sysctl(out[1])
    logical = os.cpu_count()
    return CpuInfo(arch=normalize_arch(platform.machine()), logical_cpus=logical,
                   source=f"fallback: no CPU feature source on {system}; platform.machine() and os.cpu_count() only")


def _nvidia_driver(probe: _Probe) -> str | None:
    text = probe.read("/proc/driver/nvidia/version")
    return parse_nvidia_driver(text) if text else None


def _gpus(probe: _Probe, system: str, cpu: CpuInfo, driver: str | None) -> tuple[Gpu, ...]:
    gpus: list[Gpu] = []
    smi = probe.which("nvidia-smi")
    if smi:
        out = probe.run([smi, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"])
        if out and out[0] != 0:  # drivers before compute_cap was a query field
            out = probe.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"])
        if out and out[0] == 0:
            gpus += parse_nvidia_smi(out[1])
    if not gpus and driver:
        for info in probe.glob("/proc/driver/nvidia/gpus/*/information"):
            m = re.search(r"^Model:\s*(.+)$", probe.read(info) or "", re.M)
            if m:
                gpus.append(Gpu("nvidia", m.group(1).strip(), source="/proc/driver/nvidia"))
    have_nvidia = bool(gpus)
    for dev in probe.glob("/sys/bus/pci/devices/*", limit=4096):
        cls = (probe.read(dev / "class") or "").strip()
        if not cls.startswith(("0x0300", "0x0302", "0x0380")):
            continue
        vendor_id = (probe.read(dev / "vendor") or "").strip().lower()
        vendor = _PCI_VENDORS.get(vendor_id)
        if vendor is None or (vendor == "nvidia" and have_nvidia):
            continue
        device_id = (probe.read(dev / "device") or "").strip().lower()
        label = {"nvidia": "NVIDIA", "amd": "AMD", "intel": "Intel"}[vendor]
        gpus.append(Gpu(vendor, f"{label} GPU (PCI {vendor_id}:{device_id})", source="/sys/bus/pci"))
    if system == "Darwin" and cpu.arch == "aarch64":
        gpus.append(Gpu("apple", f"{cpu.model or 'Apple silicon'} GPU", source="sysctl"))
    return tuple(gpus)


def _version_of(probe: _Probe, exe: str, pattern: str, *args: str) -> str | None:
    out = probe.run([exe, *(args or ("--version",))])
    if not out:
        return None
    m = re.search(pattern, out[1], re.M)
    return m.group(1) if m else None


def _tool(probe: _Probe, name: str, pattern: str, *args: str) -> Tool:
    path = probe.which(name)
    if path is None:
        return Tool(name)
    return Tool(name, path, _version_of(probe, path, pattern, *args))


def _compilers(probe: _Probe) -> tuple[Compiler, ...]:
    found = []
    for name in ("gcc", "g++", "clang", "clang++", "cc", "c++"):
        path = probe.which(name)
        if path is None:
            found.append(Compiler(name))
            continue
        out = probe.run([path, "--version"])
        family, version = parse_compiler_version(out[1], name) if out else ("unknown", None)
        found.append(Compiler(name, path, version, family=family))
    return tuple(found)


def _cxx(probe: _Probe, compilers: Iterable[Compiler]) -> Compiler | None:
    env_cxx = probe.env.get("CXX", "").strip()
    if env_cxx:
        exe = shlex.split(env_cxx)[0]
        path = exe if os.path.isabs(exe) and os.access(exe, os.X_OK) else probe.which(exe)
        if path is None:
            return Compiler(exe, detail="$CXX names a compiler that was not found")
        out = probe.run([path, "--version"])
        family, version = parse_compiler_version(out[1], exe) if out else ("unknown", None)
        return Compiler(exe, path, version, "from $CXX", family=family)
    by_name = {c.name: c for c in compilers}
    for name in ("c++", "g++", "clang++"):  # CMake's search order
        c = by_name.get(name)
        if c is not None and c.present:
            return dataclasses.replace(c, detail=f"first of c++, g++, clang++ on PATH: {name}")
    return None


def _cuda(probe: _Probe, driver: str | None, gpus: Iterable[Gpu]) -> Toolkit:
    candidates = [probe.env.get("CUDACXX", ""), probe.which("nvcc") or ""]
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDAToolkit_ROOT"):
        if probe.env.get(var):
            candidates.append(os.path.join(probe.env[var], "bin", "nvcc"))
    candidates.append(str(probe.at("/usr/local/cuda/bin/nvcc")))
    nvcc = next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)
    nv_gpus = [g for g in gpus if g.vendor == "nvidia"]
    if driver or nv_gpus:
        caps = sorted({g.compute_capability for g in nv_gpus if g.compute_capability})
        names = ", ".join(g.name for g in nv_gpus) or "no GPU listed"
        runtime_summary = (f"NVIDIA driver {driver or '(version unknown)'}; {len(nv_gpus)} GPU(s): {names}"
                           + (f" (compute capability {', '.join(caps)})" if caps else ""))
    else:
        runtime_summary = "no NVIDIA driver (/proc/driver/nvidia/version) and no NVIDIA GPU seen"
    runtime = bool(driver) or bool(nv_gpus)
    if nvcc is None:
        return Toolkit("cuda", summary="no CUDA toolkit: nvcc not on PATH, $CUDACXX, $CUDA_HOME or /usr/local/cuda",
                       runtime=runtime, runtime_summary=runtime_summary)
    version = _version_of(probe, nvcc, r"(release .*)")
    version = parse_nvcc_version(version) if version else None
    if version is None:
        return Toolkit("cuda", location=nvcc, summary=f"{nvcc} did not report a version (broken toolkit?)",
                       runtime=runtime, runtime_summary=runtime_summary)
    return Toolkit("cuda", True, version, nvcc, f"CUDA toolkit {version} (nvcc at {nvcc})", runtime, runtime_summary)


def _rocm(probe: _Probe, gpus: Iterable[Gpu]) -> Toolkit:
    root = probe.env.get("ROCM_PATH") or str(probe.at("/opt/rocm"))
    hipcc = os.path.join(root, "bin", "hipcc")
    if not (os.path.isfile(hipcc) and os.access(hipcc, os.X_OK)):
        hipcc = probe.which("hipcc") or ""
    amd = [g for g in gpus if g.vendor == "amd"]
    kfd = probe.at("/dev/kfd").exists()
    runtime = bool(amd) or kfd
    runtime_summary = (f"{len(amd)} AMD GPU(s)" + (", /dev/kfd present" if kfd else "")) if runtime \
        else "no AMD GPU seen (no /dev/kfd, no AMD display device on PCI)"
    if not hipcc:
        return Toolkit("rocm", summary=f"no ROCm: no hipcc in {root}/bin or on PATH", runtime=runtime,
                       runtime_summary=runtime_summary)
    text = probe.read(Path(root) / ".info" / "version")
    version = text.strip().split("-")[0] if text and text.strip() else _version_of(probe, hipcc, r"HIP version: (\S+)")
    if version and _version_tuple(version) < (6, 1):
        return Toolkit("rocm", False, version, hipcc, f"ROCm {version} is older than 6.1, which ggml requires",
                       runtime, runtime_summary)
    return Toolkit("rocm", True, version, hipcc, f"ROCm {version or '(version unknown)'} (hipcc at {hipcc})",
                   runtime, runtime_summary)


def _include_dirs(probe: _Probe, *extra: str) -> list[Path]:
    dirs = [Path(e) for e in extra if e]
    dirs += [probe.at(d) for d in ("/usr/include", "/usr/local/include")]
    return dirs


def _lib_dirs(probe: _Probe, *extra: str) -> list[Path]:
    dirs = [Path(e) for e in extra if e]
    dirs += [probe.at(d) for d in ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib")]
    dirs += probe.glob("/usr/lib/*-linux-gnu")
    return dirs


def _first_file(dirs: Iterable[Path], *names: str) -> Path | None:
    for d in dirs:
        for name in names:
            p = d / name
            if p.is_file():
                return p
    return None


def _vulkan(probe: _Probe) -> Toolkit:
    sdk = probe.env.get("VULKAN_SDK", "")
    glslc = probe.which("glslc") or (os.path.join(sdk, "bin", "glslc") if sdk and
                                     os.path.isfile(os.path.join(sdk, "bin", "glslc")) else None)
    header = _first_file(_include_dirs(probe, os.path.join(sdk, "include") if sdk else ""), "vulkan/vulkan.h")
    loader = _first_file(_lib_dirs(probe, os.path.join(sdk, "lib") if sdk else ""), "libvulkan.so", "libvulkan.dylib")
    cmake_dirs = [os.path.join(sdk, "lib", "cmake")] if sdk else []
    cmake_dirs += [str(probe.at(d)) for d in ("/usr/share/cmake", "/usr/lib/cmake", "/usr/local/share/cmake",
                                              "/usr/local/lib/cmake")]
    cmake_dirs += [str(p / "cmake") for p in probe.glob("/usr/lib/*-linux-gnu")]
    spirv = _first_file([Path(d) / "SPIRV-Headers" for d in cmake_dirs], "SPIRV-HeadersConfig.cmake")
    missing = [what for what, ok in (("glslc (shaderc)", glslc), ("Vulkan headers (vulkan/vulkan.h)", header),
                                     ("the Vulkan loader (libvulkan.so)", loader),
                                     ("SPIRV-Headers (CMake config)", spirv)) if not ok]
    version = None
    if header is not None:
        core = probe.read(header.with_name("vulkan_core.h")) or ""
        m = re.search(r"#define VK_HEADER_VERSION (\d+)", core)
        version = f"1.x.{m.group(1)}" if m else None
    m = re.search(r"shaderc v?(\S+)", _run_text(probe, glslc)) if glslc else None
    detail = {"glslc": f"{glslc} (shaderc {m.group(1)})" if glslc and m else (glslc or "absent")}
    icds = [p.name for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
            for p in probe.glob(f"{d}/*.json")]
    gpu_icds = [n for n in icds if not n.startswith("lvp_")]  # lavapipe runs Vulkan on the CPU
    # Mesa installs the Intel and AMD drivers together, GPU or not: on Linux a driver only counts
    # with a GPU render node to drive
    no_gpu = bool(icds) and sys.platform.startswith("linux") and not probe.glob("/dev/dri/renderD*")
    runtime_summary = (f"Vulkan drivers: {', '.join(icds)}" if icds else "no Vulkan driver (ICD) installed") + \
        (" (lavapipe only: a CPU implementation)" if icds and not gpu_icds else
         " but no GPU (no /dev/dri/renderD* node)" if no_gpu else "")
    gpu_icds = [] if no_gpu else gpu_icds
    summary = (f"Vulkan SDK pieces present (headers {version or '?'}, {detail['glslc']})" if not missing
               else "missing " + ", ".join(missing))
    return Toolkit("vulkan", not missing, version, str(header) if header else None, summary, bool(gpu_icds),
                   runtime_summary, detail)


def _run_text(probe: _Probe, exe: str) -> str:
    out = probe.run([exe, "--version"])
    return out[1] if out else ""


def _opencl(probe: _Probe) -> Toolkit:
    cuda_home = probe.env.get("CUDA_HOME") or str(probe.at("/usr/local/cuda"))
    rocm = probe.env.get("ROCM_PATH") or str(probe.at("/opt/rocm"))
    header = _first_file(_include_dirs(probe, os.path.join(cuda_home, "include"), os.path.join(rocm, "include")),
                         "CL/cl.h")
    loader = _first_file(_lib_dirs(probe, os.path.join(cuda_home, "lib64"), os.path.join(rocm, "lib")),
                         "libOpenCL.so")
    icds = [p.name for p in probe.glob("/etc/OpenCL/vendors/*.icd")]
    supported = [n for n in icds if re.search(r"intel|adreno|qcom", n, re.I)]
    missing = [w for w, ok in (("OpenCL headers (CL/cl.h)", header), ("the OpenCL ICD loader (libOpenCL.so)", loader))
               if not ok]
    summary = f"OpenCL headers at {header}, loader {loader}" if not missing else "missing " + ", ".join(missing)
    runtime_summary = f"OpenCL drivers (ICDs): {', '.join(icds)}" if icds else \
        "no OpenCL driver (/etc/OpenCL/vendors)"
    if icds and not supported:
        runtime_summary += "; none for Intel or Adreno, the GPUs ggml's OpenCL backend supports"
    return Toolkit("opencl", not missing, None, str(header) if header else None, summary, bool(supported),
                   runtime_summary, {"icds": ", ".join(icds)})


def _metal(system: str, cpu: CpuInfo) -> Toolkit:
    if system != "Darwin":
        return Toolkit("metal", summary="Metal needs macOS", runtime_summary="not macOS")
    apple = cpu.arch == "aarch64"
    return Toolkit("metal", True, None, None, "macOS: Metal framework (ggml embeds its shaders)", apple,
                   "Apple silicon GPU" if apple else "Intel Mac: Metal GPU not checked")


def _python_packages() -> tuple[Tool, ...]:
    tools = []
    for name in ("scikit-build-core", "nanobind", "cmake", "ninja"):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            tools.append(Tool(name))
            continue
        tools.append(Tool(name, "python package", version))
    return tuple(tools)


def pitfalls_of(machine: Machine) -> list[Pitfall]:
    """Known problems of this machine's toolchain for building llama.cpp (see each message)."""
    out = []
    cxx, cpu = machine.cxx, machine.cpu
    if cxx is None or not cxx.present:
        out.append(Pitfall("no-compiler", "no C++ compiler found ($CXX, c++, g++, clang++): install g++ or clang++"))
    elif cxx.family in ("gcc", "clang") and cxx.major is not None:
        if cxx.family == "gcc" and cxx.major < 13 and cpu.has("amx_tile") and cpu.has("amx_int8"):
            out.append(Pitfall(
                "gcc-amx-tilecfg",
                f"gcc {cxx.version} with an AMX CPU: gcc < 13 drops the stores that fill AMX's tile configuration "
                "(the first multi-row matmul dies with SIGILL); the build force-includes "
                "cmake/ggml_amx_tilecfg_fix.h into ggml-cpu/amx/mmq.cpp (cmake/amx_fix.cmake), AMX stays on",
                handled=True))
        too_old = [f for f, (gcc, clang) in ISA_MIN_COMPILER.items()
                   if cpu.has(f) and cxx.major < (gcc if cxx.family == "gcc" else clang)]
        if too_old:
            out.append(Pitfall(
                "compiler-too-old-for-cpu",
                f"{cxx.family} {cxx.version} cannot emit {', '.join(too_old)}, which this CPU has: the build leaves "
                "them unused (gcc >= 11 or clang >= 12 would use them)"))
    if machine.cmake.present and machine.cmake.version and _version_tuple(machine.cmake.version) < CMAKE_MINIMUM:
        pkg = machine.python_package("cmake")
        out.append(Pitfall(
            "cmake-too-old",
            f"cmake {machine.cmake.version} on PATH is older than {'.'.join(map(str, CMAKE_MINIMUM))}: an isolated "
            "pip build fetches cmake from PyPI; with --no-build-isolation run `pip install cmake`"
            + (f" (python package cmake {pkg.version} is installed)" if pkg.present else ""),
            handled=pkg.present))
    if cpu.translated:
        out.append(Pitfall("rosetta", "this Python runs under Rosetta 2 (x86_64 on Apple silicon): the build would "
                                      "target x86_64; use an arm64 Python to build for this Mac"))
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def _major(version: str | None) -> int | None:
    return _version_tuple(version)[0] if version and _version_tuple(version) else None


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.\-+]", version):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)
