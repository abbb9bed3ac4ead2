"""A build configuration for this machine: detection -> backends, CPU variant, ISA, CMake defines.

:meth:`BuildConfig.for_machine` turns :func:`~llamaproc.build.detect` output into typed
choices, each with a one-line reason, and :meth:`BuildConfig.cmake_defines` into llama.cpp /
ggml's own CMake options (checked against the pinned ``ggml/CMakeLists.txt``).

Choices when nothing is asked for:

* Backends: the CPU always; at most one GPU backend, the first that fits of Metal (macOS), CUDA
  (the toolkit is installed: ``nvcc``), ROCm (``hipcc``), Vulkan (SDK pieces and a GPU driver),
  OpenCL (headers, loader and an Intel or Adreno driver: the GPUs ggml's OpenCL backend runs on).
  A toolkit is enough for CUDA and ROCm (they are installed on purpose, and CI runners build
  without a GPU); Vulkan and OpenCL headers come with many desktops, so they also need a driver.
* CPU: ``native`` (``GGML_NATIVE=ON``: the compiler targets this CPU, fastest here, may not run
  on an older CPU). ``portable=True`` builds ggml's CPU backend once per instruction-set level
  (``LLAMAPROC_PORTABLE=ON``) and loads the best for the running CPU at import: one wheel for
  every CPU of the architecture. ``target=`` builds one fixed level instead, named after ggml's
  own CPU variants (``haswell``, ``skylakex``, ``sapphirerapids``, ``armv8.2_2``, ...).
* Every backend switch is written out, ON or OFF: the build folder (``build/{wheel_tag}``) keeps
  CMake's cache, where a define from an earlier build would otherwise stay in force.
"""

from __future__ import annotations

import enum
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .machine import ISA_MIN_COMPILER, Machine, detect


class Backend(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"
    ROCM = "rocm"
    VULKAN = "vulkan"
    OPENCL = "opencl"
    METAL = "metal"


class CpuVariant(str, enum.Enum):
    NATIVE = "native"  # GGML_NATIVE=ON: -march=native (or -mcpu=native)
    PORTABLE = "portable"  # LLAMAPROC_PORTABLE=ON: every level built, the best loaded at run time
    FIXED = "fixed"  # GGML_NATIVE=OFF and one fixed instruction-set level


#: ggml's CMake switch of each GPU backend.
GGML_BACKEND_OPTION = {Backend.CUDA: "GGML_CUDA", Backend.ROCM: "GGML_HIP", Backend.VULKAN: "GGML_VULKAN",
                       Backend.OPENCL: "GGML_OPENCL", Backend.METAL: "GGML_METAL"}
_GPU_ORDER = (Backend.METAL, Backend.CUDA, Backend.ROCM, Backend.VULKAN, Backend.OPENCL)
_LABEL = {Backend.CPU: "CPU", Backend.CUDA: "CUDA", Backend.ROCM: "ROCm", Backend.VULKAN: "Vulkan",
          Backend.OPENCL: "OpenCL", Backend.METAL: "Metal"}

#: ggml's x86 instruction-set options (GGML_<name>) and the /proc/cpuinfo flags each needs.
X86_OPTIONS: dict[str, tuple[str, ...]] = {
    "SSE42": ("sse4_2",), "AVX": ("avx",), "F16C": ("f16c",), "FMA": ("fma",), "AVX2": ("avx2",), "BMI2": ("bmi2",),
    "AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"), "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",), "AVX512_BF16": ("avx512_bf16",), "AVX_VNNI": ("avx_vnni",),
    "AMX_TILE": ("amx_tile",), "AMX_INT8": ("amx_int8",), "AMX_BF16": ("amx_bf16",),
}
_HASWELL = ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2")
#: ggml's x86 CPU variants (ggml/src/CMakeLists.txt, GGML_CPU_ALL_VARIANTS) and their options.
X86_TARGETS: dict[str, tuple[str, ...]] = {
    "x64": (), "sse42": ("SSE42",), "sandybridge": ("SSE42", "AVX"), "ivybridge": ("SSE42", "AVX", "F16C"),
    "piledriver": ("SSE42", "AVX", "F16C", "FMA"), "haswell": _HASWELL,
    "skylakex": _HASWELL + ("AVX512",), "cannonlake": _HASWELL + ("AVX512", "AVX512_VBMI"),
    "cascadelake": _HASWELL + ("AVX512", "AVX512_VNNI"),
    "icelake": _HASWELL + ("AVX512", "AVX512_VBMI", "AVX512_VNNI"),
    "cooperlake": _HASWELL + ("AVX512", "AVX512_VNNI", "AVX512_BF16"),
    "zen4": _HASWELL + ("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"),
    "alderlake": _HASWELL + ("AVX_VNNI",),
    "sapphirerapids": _HASWELL + ("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_TILE", "AMX_INT8"),
}
#: ggml's ARM options (GGML_INTERNAL_<name> in its variants) and the feature each needs.
ARM_OPTIONS = {"DOTPROD": "dotprod", "FP16_VECTOR_ARITHMETIC": "fp16", "SVE": "sve", "MATMUL_INT8": "i8mm",
               "SVE2": "sve2", "SME": "sme"}
_A82 = ("DOTPROD", "FP16_VECTOR_ARITHMETIC")
ARM_TARGETS: dict[str, tuple[str, ...]] = {  # Linux
    "armv8.0_1": (), "armv8.2_1": ("DOTPROD",), "armv8.2_2": _A82, "armv8.2_3": _A82 + ("SVE",),
    "armv8.6_1": _A82 + ("SVE", "MATMUL_INT8"), "armv8.6_2": _A82 + ("SVE", "MATMUL_INT8", "SVE2"),
    "armv9.2_1": _A82 + ("SVE", "MATMUL_INT8", "SME"), "armv9.2_2": _A82 + ("SVE", "MATMUL_INT8", "SVE2", "SME"),
}
APPLE_TARGETS: dict[str, tuple[str, ...]] = {
    "apple_m1": ("DOTPROD",), "apple_m2_m3": ("DOTPROD", "MATMUL_INT8"), "apple_m4": ("DOTPROD", "MATMUL_INT8", "SME"),
}
_DEFAULT_PORTABLE = {"x86_64": "haswell", "aarch64": "armv8.2_2", "apple": "apple_m1"}
BUILD_TYPES = {"Release": "-O3 -DNDEBUG", "RelWithDebInfo": "-O2 -g -DNDEBUG", "MinSizeRel": "-Os -DNDEBUG",
               "Debug": "-O0 -g, asserts on (slow)"}


def cpu_targets(arch: str, system: str = "Linux") -> dict[str, tuple[str, ...]]:
    """The portable CPU targets for an architecture: ggml variant name -> its ISA options."""
    if arch == "x86_64":
        return dict(X86_TARGETS)
    if arch == "aarch64":
        return dict(APPLE_TARGETS if system == "Darwin" else ARM_TARGETS)
    return {}


def arm_march(options: Iterable[str]) -> str:
    """The ``-march`` ggml builds an ARM variant with (GGML_CPU_ARM_ARCH)."""
    opts = set(options)
    base, tags = "armv8-a", ""
    for opt, tag, version in (("DOTPROD", "+dotprod", "armv8.2-a"), ("FP16_VECTOR_ARITHMETIC", "+fp16", "armv8.2-a"),
                              ("SVE", "+sve", "armv8.2-a"), ("MATMUL_INT8", "+i8mm", "armv8.6-a"),
                              ("SVE2", "+sve2", "armv8.6-a"), ("SME", "+sme", "armv9.2-a")):
        if opt in opts:
            base, tags = version, tags + tag
    return base + tags


def ggml_cuda_architectures(cuda_version: str) -> str:
    """The CUDA architectures ggml compiles for when it cannot use ``native`` (ggml-cuda/CMakeLists.txt)."""
    v = tuple(int(p) for p in cuda_version.split(".")[:2] if p.isdigit())
    archs = [] if v >= (13,) else ["50-virtual", "61-virtual", "70-virtual"]
    archs += ["75-virtual", "80-virtual", "86-real"]
    if v >= (11, 8):
        archs += ["89-real", "90-virtual"]
    if v >= (12, 8):
        archs.append("120a-real")
    if v >= (12, 9):
        archs.append("121a-real")
    return ";".join(archs)


def _on(flag: bool) -> str:
    return "ON" if flag else "OFF"


@dataclass(frozen=True)
class BuildConfig:
    """How to build llamaproc's extension for a machine; ``reasons`` says why, one line per choice.

    Attributes:
        backends: ggml backends to build; always starts with CPU.
        cpu_variant: ``native`` (tuned to the building CPU), ``portable`` (every ISA level, the
            best chosen at run time) or ``fixed`` (one ISA level).
        cpu_target: ``native``; ``all`` for ``portable``; the ggml CPU variant of a ``fixed``
            build (``haswell``, ...).
        instruction_sets: ggml's names of the ISA extensions the CPU code uses (``AVX2``,
            ``AVX512``, ``AMX_INT8``, ``DOTPROD``, ...). For ``native``, what the compiler will
            find on this CPU; for ``portable``, those of the variant this CPU will load; for
            ``fixed``, the target's.
        build_type: CMake build type, i.e. the optimisation level (``Release``: -O3).
        arch: CPU architecture built for (``x86_64``, ``aarch64``, ...).
        cuda_architectures: ``CMAKE_CUDA_ARCHITECTURES`` when it must be set; None lets ggml choose.
        reasons: choice name (``backends``, ``cuda``, ``cpu_variant``, ...) -> one-line reason.
        notes: what the builder should know (pitfalls that apply, requests the machine contradicts).
    """

    backends: tuple[Backend, ...]
    cpu_variant: CpuVariant
    cpu_target: str
    instruction_sets: tuple[str, ...]
    build_type: str = "Release"
    arch: str = "x86_64"
    cuda_architectures: str | None = None
    reasons: Mapping[str, str] = field(default_factory=dict, hash=False)
    notes: tuple[str, ...] = ()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def for_machine(cls, machine: Machine | None = None, *, backends: Sequence[Backend | str] | None = None,
                    portable: bool = False, target: str | None = None, build_type: str = "Release") -> BuildConfig:
        """The configuration for ``machine`` (default: :func:`detect` now).

        Args:
            backends: GPU backends to build (the CPU is always built); None chooses from what the
                machine has (see the module docstring). A requested backend whose toolkit is
                missing is kept, with a note: the build will say what to install.
            portable: Build the CPU backend for every instruction-set level; the best for the
                running CPU is loaded at import (runs on any CPU of the architecture).
            target: Build for this one fixed level instead, a ggml CPU variant name (see
                :func:`cpu_targets`).
            build_type: ``Release`` (default), ``RelWithDebInfo``, ``MinSizeRel`` or ``Debug``.

        Raises:
            ConfigError: an unknown backend, target or build type.
        """
        machine = machine if machine is not None else detect()
        if build_type not in BUILD_TYPES:
            raise ConfigError(f"build type {build_type!r} is not one of {', '.join(BUILD_TYPES)}")
        reasons: dict[str, str] = {}
        notes: list[str] = []
        chosen = _choose_backends(machine, backends, reasons, notes)
        if portable and target:
            raise ConfigError("portable builds every CPU level and picks one at run time; target builds one fixed "
                              "level: ask for one of them")
        variant = CpuVariant.PORTABLE if portable else CpuVariant.FIXED if target else CpuVariant.NATIVE
        cpu_target, isa = _choose_cpu(machine, variant, target, reasons, notes)
        reasons["build_type"] = f"{build_type}: {BUILD_TYPES[build_type]}" + (
            " (the project default, pyproject's cmake.build-type)" if build_type == "Release" else "")
        cuda_arch = None
        if Backend.CUDA in chosen:
            cuda_arch = _cuda_architectures(machine, variant, reasons)
        reasons["backend_dl"] = (
            "GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS on: ggml as shared libraries next to _core, one CPU module per "
            "level, loaded at import" if variant is CpuVariant.PORTABLE else
            "GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS off: _core links ggml statically (--portable loads one CPU "
            "module per level at run time instead)")
        return cls(backends=chosen, cpu_variant=variant, cpu_target=cpu_target, instruction_sets=isa,
                   build_type=build_type, arch=machine.cpu.arch, cuda_architectures=cuda_arch, reasons=reasons,
                   notes=tuple(notes))

    # --- outputs ---------------------------------------------------------------------------

    def cmake_defines(self) -> dict[str, str]:
        """CMake cache values, in order: ``{"CMAKE_BUILD_TYPE": "Release", "GGML_NATIVE": "ON", ...}``."""
        portable = self.cpu_variant is CpuVariant.PORTABLE
        d = {"CMAKE_BUILD_TYPE": self.build_type, "GGML_NATIVE": _on(self.cpu_variant is CpuVariant.NATIVE),
             "LLAMAPROC_PORTABLE": _on(portable), "GGML_BACKEND_DL": _on(portable),
             "GGML_CPU_ALL_VARIANTS": _on(portable)}
        if self.cpu_variant is CpuVariant.FIXED:
            if self.arch == "x86_64":
                d.update({f"GGML_{opt}": _on(opt in self.instruction_sets) for opt in X86_OPTIONS})
            elif self.arch == "aarch64":
                d["GGML_CPU_ARM_ARCH"] = arm_march(self.instruction_sets)
        for backend, option in GGML_BACKEND_OPTION.items():
            d[option] = _on(backend in self.backends)
        if self.cuda_architectures:
            d["CMAKE_CUDA_ARCHITECTURES"] = self.cuda_architectures
        return d

    def backend_defines(self) -> dict[str, str]:
        """The backend part of :meth:`cmake_defines` (``GGML_CUDA``, ``GGML_VULKAN``, ...,
        ``CMAKE_CUDA_ARCHITECTURES``): what ``-DLLAMAPROC_BACKENDS=auto`` sets at configure time."""
        d = {option: _on(backend in self.backends) for backend, option in GGML_BACKEND_OPTION.items()}
        if self.cuda_architectures:
            d["CMAKE_CUDA_ARCHITECTURES"] = self.cuda_architectures
        return d

    def cmake_args(self) -> list[str]:
        """``-DNAME=VALUE`` arguments (for ``CMAKE_ARGS`` or a plain ``cmake`` call)."""
        return [f"-D{k}={v}" for k, v in self.cmake_defines().items()]

    def config_settings(self) -> list[str]:
        """pip / scikit-build-core ``-C`` options: ``-Ccmake.build-type=...``, ``-Ccmake.define.X=...``."""
        out = [f"-Ccmake.build-type={self.build_type}"]
        if self.cpu_variant is CpuVariant.PORTABLE:
            # its own folder: CMake's cache of a native build would otherwise carry over
            out.append("-Cbuild-dir=build/portable-{wheel_tag}")
        out += [f"-Ccmake.define.{k}={v}" for k, v in self.cmake_defines().items() if k != "CMAKE_BUILD_TYPE"]
        return out

    def pip_install_command(self, source: str = ".", *, python: str | None = None,
                            editable: bool = False) -> list[str]:
        """The ``pip install`` that builds this configuration from the source tree ``source``.

        ``editable=True`` gives the developer loop (``--no-build-isolation``, ``-e``; needs
        scikit-build-core and nanobind installed).
        """
        cmd = [python or sys.executable, "-m", "pip", "install"]
        if editable:
            cmd.append("--no-build-isolation")
        cmd += ["-v", *self.config_settings()]
        cmd += ["-e", source] if editable else [source]
        return cmd

    def pip_install_line(self, source: str = ".", **kwargs: Any) -> str:
        """:meth:`pip_install_command` as one shell-quoted line."""
        return shlex.join(self.pip_install_command(source, **kwargs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "backends": [b.value for b in self.backends], "cpu_variant": self.cpu_variant.value,
            "cpu_target": self.cpu_target, "instruction_sets": list(self.instruction_sets),
            "build_type": self.build_type, "arch": self.arch, "cuda_architectures": self.cuda_architectures,
            "reasons": dict(self.reasons), "notes": list(self.notes), "cmake_defines": self.cmake_defines(),
            "pip_install": self.pip_install_command(),
        }

    def describe(self) -> str:
        """A table of choices, a reason each, then the notes, defines and install command."""
        r = self.reasons
        rows = [("backends", ", ".join(b.value for b in self.backends), r.get("backends", ""))]
        for backend in _GPU_ORDER:
            rows.append((f"  {backend.value}", "on" if backend in self.backends else "off", r.get(backend.value, "")))
        rows += [("cpu variant", self.cpu_variant.value, r.get("cpu_variant", "")),
                 ("cpu target", self.cpu_target, r.get("cpu_target", "")),
                 ("instruction sets", " ".join(self.instruction_sets) or "-", r.get("instruction_sets", "")),
                 ("build type", self.build_type, r.get("build_type", ""))]
        if Backend.CUDA in self.backends:
            rows.append(("cuda architectures", self.cuda_architectures or "(ggml's choice)",
                         r.get("cuda_architectures", "")))
        rows.append(("runtime dispatch", "off", r.get("backend_dl", "")))
        width = max(len(k) for k, _, _ in rows)
        vwidth = min(max(len(v) for _, v, _ in rows), 28)
        lines = [f"{k:<{width}}  {v:<{vwidth}}  {why}".rstrip() for k, v, why in rows]
        if self.notes:
            lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        lines += ["", "cmake defines:"] + [f"  {a}" for a in self.cmake_args()]
        lines += ["", "install:", f"  {self.pip_install_line()}"]
        return "\n".join(lines)


# --- the choices ---------------------------------------------------------------------------

def _parse_backends(requested: Iterable[Backend | str]) -> list[Backend]:
    out = []
    for item in requested:
        try:
            backend = Backend(item.lower() if isinstance(item, str) else item)
        except ValueError:
            raise ConfigError(f"unknown backend {item!r}; one of: {', '.join(b.value for b in Backend)}") from None
        if backend not in out:
            out.append(backend)
    return out


def _choose_backends(machine: Machine, requested: Sequence[Backend | str] | None, reasons: dict[str, str],
                     notes: list[str]) -> tuple[Backend, ...]:
    tk = {Backend(t.name): t for t in machine.toolkits}
    reasons["cpu"] = "always built: ggml's CPU backend runs what a GPU backend does not"
    if requested is not None:
        wanted = [b for b in _parse_backends(requested) if b is not Backend.CPU]
        for b in _GPU_ORDER:
            t = tk[b]
            if b not in wanted:
                reasons[b.value] = "not requested"
            elif t.buildable:
                reasons[b.value] = f"requested; {t.summary}; {t.runtime_summary}"
            else:
                reasons[b.value] = f"requested, but {t.summary}"
                notes.append(f"{_LABEL[b]} was requested but {t.summary}: {GGML_BACKEND_OPTION[b]}=ON will fail "
                             "to configure until it is installed")
        chosen = [b for b in _GPU_ORDER if b in wanted]
        reasons["backends"] = "as requested" + ("" if chosen else ": CPU only")
        _note_runtime(machine, chosen, notes)
        return (Backend.CPU, *chosen)

    def eligible(b: Backend) -> bool:
        t = tk[b]
        return t.buildable and (t.runtime or b in (Backend.CUDA, Backend.ROCM, Backend.METAL))

    candidates = [b for b in _GPU_ORDER if eligible(b)]
    pick = next((b for b in candidates if tk[b].runtime), candidates[0] if candidates else None)
    for b in _GPU_ORDER:
        t = tk[b]
        if b is pick:
            reasons[b.value] = f"{t.summary}; {t.runtime_summary}"
        elif pick is not None and b in candidates:
            reasons[b.value] = (f"buildable ({t.summary}), but {_LABEL[pick]} was chosen; one GPU backend by "
                                f"default, ask for both with --backend {pick.value} --backend {b.value}")
        elif t.buildable:
            reasons[b.value] = f"{t.summary}, but nothing to run it on ({t.runtime_summary})"
        else:
            extra = f"; {t.runtime_summary}: install the toolkit to use it" if t.runtime and b is not Backend.METAL \
                else ""
            reasons[b.value] = f"{t.summary}{extra}"
    if pick is None:
        reasons["backends"] = "CPU only: no GPU backend can be built here (see each backend)"
        return (Backend.CPU,)
    reasons["backends"] = f"CPU + {_LABEL[pick]}: " + (
        "its toolkit and a device are present" if tk[pick].runtime else "its toolkit is present (no device seen)")
    _note_runtime(machine, [pick], notes)
    return (Backend.CPU, pick)


def _note_runtime(machine: Machine, chosen: Iterable[Backend], notes: list[str]) -> None:
    if Backend.CUDA in chosen and not machine.nvidia_driver and not machine.toolkits.cuda.runtime:
        notes.append("no NVIDIA driver here: a CUDA build links the driver library (libcuda.so.1), so it loads only "
                     "where a driver is installed (--backend cpu builds for this machine alone)")


def _cpu_ok(machine: Machine, option: str) -> bool:
    if machine.cpu.arch == "x86_64":
        return machine.cpu.has(*X86_OPTIONS[option])
    return machine.cpu.has(ARM_OPTIONS[option])


def _compiler(machine: Machine) -> str:
    cxx = machine.cxx
    return f"{cxx.family} {cxx.version}" if cxx is not None else "the compiler"


def _compiler_can(machine: Machine, option: str) -> bool:
    """Whether the C++ compiler CMake will use knows the flags of a GGML_<option> (x86 only)."""
    cxx = machine.cxx
    if machine.cpu.arch != "x86_64" or cxx is None or cxx.major is None or cxx.family not in ("gcc", "clang"):
        return True
    for flag in X86_OPTIONS[option]:
        mins = ISA_MIN_COMPILER.get(flag)
        if mins and cxx.major < (mins[0] if cxx.family == "gcc" else mins[1]):
            return False
    return True


def _choose_cpu(machine: Machine, variant: CpuVariant, target: str | None, reasons: dict[str, str],
                notes: list[str]) -> tuple[str, tuple[str, ...]]:
    cpu = machine.cpu
    targets = cpu_targets(cpu.arch, machine.system)
    apple = cpu.arch == "aarch64" and machine.system == "Darwin"
    options = X86_OPTIONS if cpu.arch == "x86_64" else ARM_OPTIONS if cpu.arch == "aarch64" else {}
    supported = [t for t, opts in targets.items() if all(_cpu_ok(machine, o) for o in opts)] if cpu.features_known \
        else []
    best = max(supported, key=lambda t: len(targets[t]), default=None)
    amx_fix = next((p for p in machine.pitfalls if p.code == "gcc-amx-tilecfg"), None)
    described = f"{cpu.model or cpu.arch}" + (f", {cpu.physical_cores} cores" if cpu.physical_cores else "")

    if variant is CpuVariant.NATIVE:
        if not cpu.features_known:
            isa: tuple[str, ...] = ()
            reasons["instruction_sets"] = (f"CPU features unknown ({cpu.source}): the compiler decides with "
                                           "-march=native at build time")
        else:
            isa = tuple(o for o in options if _cpu_ok(machine, o) and _compiler_can(machine, o))
            lost = [o for o in options if _cpu_ok(machine, o) and not _compiler_can(machine, o)]
            reasons["instruction_sets"] = (f"what -march=native finds on this CPU ({cpu.source})"
                                           + (f"; {_compiler(machine)} cannot emit {' '.join(lost)}" if lost else ""))
        reasons["cpu_variant"] = ("native (GGML_NATIVE=ON): fastest on this CPU; the result may die with SIGILL on an "
                                  "older CPU (use --portable to build for other machines)")
        reasons["cpu_target"] = f"this CPU: {described}" + (f" (ggml's closest variant: {best})" if best else "")
        if amx_fix is not None and "AMX_INT8" in isa:
            notes.append(amx_fix.message)
        if cpu.arch == "x86_64" and cpu.has("avx512_fp16"):
            notes.append("AVX512-FP16: the native build keeps it out of ggml's F16 vector code (-mno-avx512fp16), "
                         "which decoded about 30 % faster on a Sapphire Rapids CPU (docs/benchmarks.md); "
                         "-Ccmake.define.LLAMAPROC_AVX512FP16=ON uses it")
        return "native", isa

    if not targets:
        raise ConfigError(f"no portable CPU targets are defined for {cpu.arch}; build native (the default)")
    if variant is CpuVariant.PORTABLE:
        here = best if best else _DEFAULT_PORTABLE["apple" if apple else cpu.arch]
        reasons["cpu_variant"] = ("portable (LLAMAPROC_PORTABLE=ON): ggml's CPU backend once per instruction-set "
                                  "level, the best for the running CPU loaded at import (LLAMAPROC_CPU_VARIANT forces "
                                  "one); runs on any " + ("Apple silicon Mac" if apple else f"{cpu.arch} CPU"))
        reasons["cpu_target"] = (f"all of ggml's {cpu.arch} variants; this CPU would load {best}" if best else
                                 f"all of ggml's {cpu.arch} variants (CPU features unknown here)")
        isa = tuple(o for o in targets[here] if _compiler_can(machine, o))
        reasons["instruction_sets"] = f"per variant; those of {here} here"
        if amx_fix is not None and "AMX_INT8" in isa:
            notes.append(amx_fix.message)
        return "all", isa
    assert target is not None  # a fixed level is always asked for by name
    if target not in targets:
        raise ConfigError(f"unknown CPU target {target!r} for {cpu.arch}; one of: {', '.join(targets)}")
    why = "as requested"
    if cpu.features_known and target not in supported:
        missing = [o for o in targets[target] if not _cpu_ok(machine, o)]
        why += f"; this CPU lacks {' '.join(missing)}: the build will not run here"
        notes.append(f"target {target} needs {' '.join(missing)}, which this CPU lacks: the build runs only on "
                     "CPUs that have them")
    isa = tuple(o for o in targets[target] if _compiler_can(machine, o))
    dropped = [o for o in targets[target] if o not in isa]
    if dropped:
        notes.append(f"{_compiler(machine)} cannot emit {' '.join(dropped)}: left out of the {target} build")
    reasons["cpu_variant"] = ("fixed (GGML_NATIVE=OFF): one instruction-set level, so the result runs on any CPU "
                              "that has it")
    reasons["cpu_target"] = why
    reasons["instruction_sets"] = (f"ggml's {target} variant" + (f" minus {' '.join(dropped)}" if dropped else "")
                                   + (f" (-march={arm_march(isa)})" if cpu.arch == "aarch64" else ""))
    if amx_fix is not None and "AMX_INT8" in isa:
        notes.append(amx_fix.message)
    return target, isa


def _cuda_architectures(machine: Machine, variant: CpuVariant, reasons: dict[str, str]) -> str | None:
    caps = sorted({g.compute_capability for g in machine.gpus if g.vendor == "nvidia" and g.compute_capability})
    version = machine.toolkits.cuda.version
    if variant is not CpuVariant.NATIVE:
        reasons["cuda_architectures"] = "ggml's list for a build without GGML_NATIVE (runs on any recent NVIDIA GPU)"
        return None
    if caps or any(g.vendor == "nvidia" for g in machine.gpus):
        reasons["cuda_architectures"] = ("native: CMake compiles for the GPU(s) here"
                                         + (f" (compute capability {', '.join(caps)})" if caps else ""))
        return None
    if not version:
        reasons["cuda_architectures"] = "no GPU and no toolkit version to choose a list from: ggml's choice"
        return None
    reasons["cuda_architectures"] = (f"no NVIDIA GPU visible, where CMake's 'native' would find none: ggml's own "
                                     f"list for CUDA {version}")
    return ggml_cuda_architectures(version)

