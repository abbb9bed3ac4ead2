"""llamaproc.build: detection against recorded /proc/cpuinfo samples and fake toolkit layouts, the
config -> CMake defines mapping, the build-config CLI, and that none of it needs `_core`.

Everything here runs before the extension exists (`PYTHONPATH=src`, no `_core*.so`). Detection
is pointed at fake trees (`root=`) and fake programs (`env={"PATH": ...}`), never at this
machine's own hardware, except in the smoke tests that only check shapes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import llamaproc
from llamaproc.build import Backend, BuildConfig, CpuVariant, cpu_targets, detect
from llamaproc.__main__ import main as cli_main
from llamaproc.build import cli as build_cli
from llamaproc.build import machine as machine_mod
from llamaproc.build.config import arm_march, ggml_cuda_architectures
from llamaproc.build.machine import parse_compiler_version, parse_cpuinfo, parse_sysctl
from llamaproc.errors import ConfigError

DATA = Path(__file__).parent / "data" / "cpuinfo"
SRC = Path(llamaproc.__file__).resolve().parent.parent
posix_only = pytest.mark.skipif(os.name != "posix", reason="fake programs are shell scripts")

GCC12 = "c++ (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n"
GCC13 = "c++ (Ubuntu 13.2.0-23ubuntu4) 13.2.0\nCopyright (C) 2023 Free Software Foundation, Inc.\n"
GCC10 = "c++ (Debian 10.2.1-6) 10.2.1 20210110\nCopyright (C) 2020 Free Software Foundation, Inc.\n"
NVCC = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release {0}, V{1}\nBuild cuda_{0}\n"


class Fake:
    """A fake machine: files under a root, programs on a PATH of their own."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        self.bin = tmp_path / "bin"
        self.root.mkdir()
        self.bin.mkdir()
        self.env = {"PATH": str(self.bin)}

    def file(self, path: str, text: str = "") -> Path:
        p = self.root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def program(self, name: str, output: str = "", *, where: Path | None = None, script: str | None = None) -> Path:
        p = (where or self.bin) / name
        p.parent.mkdir(parents=True, exist_ok=True)
        quoted = (output + "\n").replace("'", "'\\''")
        body = script if script is not None else f"printf '%s' '{quoted}'\n"  # a builtin: PATH has only bin/
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)
        return p

    def cpu(self, sample: str) -> Fake:
        self.file("/proc/cpuinfo", (DATA / sample).read_text())
        return self

    def detect(self, system: str = "Linux", **kw):
        return detect(root=self.root, env=self.env, system=system, **kw)


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


# --- CPU detection from recorded samples ------------------------------------------------------

@pytest.mark.parametrize("sample, arch, cores, logical, has, lacks", [
    ("sapphire_rapids.txt", "x86_64", 1, 2, ["avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                                             "amx_int8", "amx_bf16"], []),
    ("emerald_rapids_vm.txt", "x86_64", 2, 2, ["avx2", "avx512bw", "amx_int8"], []),
    ("haswell.txt", "x86_64", 2, 2, ["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"],
     ["avx512f", "avx_vnni", "amx_tile"]),
    ("westmere_sse42.txt", "x86_64", 1, 1, ["sse4_2"], ["avx", "avx2", "fma", "f16c"]),
    ("neoverse_v1_sve.txt", "aarch64", 2, 2, ["neon", "dotprod", "fp16", "sve", "i8mm"], ["sve2", "sme"]),
])
def test_cpuinfo_samples(sample, arch, cores, logical, has, lacks):
    cpu = parse_cpuinfo((DATA / sample).read_text())
    assert (cpu.arch, cpu.physical_cores, cpu.logical_cpus, cpu.features_known) == (arch, cores, logical, True)
    assert cpu.has(*has), cpu.features
    assert not any(cpu.has(f) for f in lacks), cpu.features
    assert (DATA / sample).stat().st_size < 4096


def test_cpuinfo_model_names_and_vendors():
    assert parse_cpuinfo((DATA / "sapphire_rapids.txt").read_text()).model == "Intel(R) Xeon(R) Platinum 8488C"
    arm = parse_cpuinfo((DATA / "neoverse_v1_sve.txt").read_text())
    assert (arm.model, arm.vendor) == ("Neoverse-V1", "ARM")


def test_a_hybrid_cpu_reports_what_every_core_has():
    text = (DATA / "haswell.txt").read_text()
    first, second = text.split("\n\n", 1)
    text = first.replace(" bmi2 ", " bmi2 avx_vnni ").replace(" fma ", " ") + "\n\n" + second
    cpu = parse_cpuinfo(text)
    assert "avx_vnni" in text and not cpu.has("avx_vnni") and not cpu.has("fma") and cpu.has("avx2")


def test_detect_reads_cpuinfo_under_root(fake):
    machine = fake.cpu("westmere_sse42.txt").detect()
    assert machine.cpu.source == "/proc/cpuinfo" and machine.cpu.features == ("sse4_2",)


M2_SYSCTL = """\
hw.ncpu: 8
hw.physicalcpu: 8
hw.logicalcpu: 8
hw.optional.arm64: 1
hw.optional.AdvSIMD: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_I8MM: 1
hw.optional.arm.FEAT_SME: 0
machdep.cpu.brand_string: Apple M2
"""
INTEL_MAC_SYSCTL = """\
hw.physicalcpu: 6
hw.logicalcpu: 12
machdep.cpu.vendor: GenuineIntel
machdep.cpu.brand_string: Intel(R) Core(TM) i7-8700B CPU @ 3.20GHz
machdep.cpu.features: FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFSH DS ACPI MMX FXSR SSE SSE2 SS HTT TM PBE SSE3 PCLMULQDQ DTES64 MON DSCPL VMX EST TM2 SSSE3 FMA CX16 TPR PDCM SSE4.1 SSE4.2 x2APIC MOVBE POPCNT AES PCID XSAVE OSXSAVE SEGLIM64 TSCTMR AVX1.0 RDRAND F16C
machdep.cpu.leaf7_features: RDWRFSGS TSC_THREAD_OFFSET SGX BMI1 AVX2 SMEP BMI2 ERMS INVPCID FPU_CSDS MPX RDSEED ADX SMAP CLFSOPT IPT MDCLEAR TSXFA IBRS STIBP L1DF SSBD
"""


def test_sysctl_samples():
    m2 = parse_sysctl(M2_SYSCTL)
    assert (m2.arch, m2.model, m2.physical_cores) == ("aarch64", "Apple M2", 8)
    assert m2.features == ("neon", "dotprod", "fp16", "i8mm")
    intel = parse_sysctl(INTEL_MAC_SYSCTL)
    assert (intel.arch, intel.physical_cores, intel.logical_cpus) == ("x86_64", 6, 12)
    assert intel.features == ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")


@posix_only
def test_macos_detection_runs_sysctl_and_builds_metal(fake):
    fake.program("sysctl", M2_SYSCTL)
    machine = fake.detect(system="Darwin")
    assert machine.cpu.source == "sysctl" and machine.cpu.has("dotprod", "i8mm")
    assert machine.toolkits.metal.buildable and any(g.vendor == "apple" for g in machine.gpus)
    config = BuildConfig.for_machine(machine)
    assert config.backends == (Backend.CPU, Backend.METAL)
    assert config.cmake_defines()["GGML_METAL"] == "ON"
    portable = BuildConfig.for_machine(machine, portable=True)
    assert portable.cpu_target == "all" and "this CPU would load apple_m2_m3" in portable.reasons["cpu_target"]
    assert portable.cmake_defines()["LLAMAPROC_PORTABLE"] == "ON" and "GGML_CPU_ARM_ARCH" not in portable.cmake_defines()
    m1 = BuildConfig.for_machine(machine, target="apple_m1")
    assert m1.cmake_defines()["GGML_CPU_ARM_ARCH"] == "armv8.2-a+dotprod"


@posix_only
def test_rosetta_is_a_pitfall(fake):
    fake.program("sysctl", M2_SYSCTL + "sysctl.proc_translated: 1\n" + INTEL_MAC_SYSCTL)
    machine = fake.detect(system="Darwin")
    assert machine.cpu.arch == "x86_64" and machine.cpu.translated
    assert "rosetta" in {p.code for p in machine.pitfalls}


def test_other_systems_fall_back_without_features(fake):
    machine = fake.detect(system="Windows")
    assert not machine.cpu.features_known and machine.cpu.source.startswith("fallback")
    config = BuildConfig.for_machine(machine)
    assert config.cpu_variant is CpuVariant.NATIVE and config.instruction_sets == ()
    assert "unknown" in config.reasons["instruction_sets"]


# --- GPU toolkits: fake layouts ----------------------------------------------------------------

@posix_only
def test_fake_nvcc_on_path_is_the_cuda_toolkit(fake):
    fake.program("nvcc", NVCC.format("12.4", "12.4.131"))
    machine = fake.cpu("haswell.txt").detect()
    cuda = machine.toolkits.cuda
    assert (cuda.buildable, cuda.version, cuda.location) == (True, "12.4.131", str(fake.bin / "nvcc"))
    assert not cuda.runtime and machine.nvidia_driver is None
    config = BuildConfig.for_machine(machine)
    d = config.cmake_defines()
    assert config.backends == (Backend.CPU, Backend.CUDA) and d["GGML_CUDA"] == "ON"
    # no GPU to detect: CMake's "native" would find none, so ggml's own list for 12.4 is named
    assert d["CMAKE_CUDA_ARCHITECTURES"] == ("50-virtual;61-virtual;70-virtual;75-virtual;80-virtual;86-real;"
                                             "89-real;90-virtual")
    assert any("libcuda.so.1" in n for n in config.notes)


@posix_only
def test_an_nvidia_gpu_with_its_driver_keeps_cuda_native(fake):
    fake.program("nvcc", NVCC.format("13.0", "13.0.88"))
    fake.program("nvidia-smi", "NVIDIA H200, 143771, 9.0")
    fake.file("/proc/driver/nvidia/version",
              "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build  (dvs-builder@U16)\n"
              "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    machine = fake.cpu("sapphire_rapids.txt").detect()
    assert machine.nvidia_driver == "570.124.06"
    assert [(g.name, g.memory_mib, g.compute_capability) for g in machine.gpus] == [("NVIDIA H200", 143771, "9.0")]
    config = BuildConfig.for_machine(machine)
    assert "CMAKE_CUDA_ARCHITECTURES" not in config.cmake_defines() and "9.0" in config.reasons["cuda_architectures"]
    assert not any("libcuda" in n for n in config.notes)


@posix_only
def test_a_gpu_without_the_toolkit_says_what_to_install(fake):
    fake.file("/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug\n")
    fake.file("/proc/driver/nvidia/gpus/0000:01:00.0/information", "Model: \t\t NVIDIA L4\nIRQ: 42\n")
    machine = fake.cpu("haswell.txt").detect()
    assert machine.gpus[0].name == "NVIDIA L4" and not machine.toolkits.cuda.buildable
    config = BuildConfig.for_machine(machine)
    assert config.backends == (Backend.CPU,) and config.cmake_defines()["GGML_CUDA"] == "OFF"
    assert "nvcc" in config.reasons["cuda"] and "install the toolkit" in config.reasons["cuda"]


@posix_only
@pytest.mark.parametrize("version, buildable", [("6.2.4-120", True), ("5.7.1-98", False)])
def test_fake_rocm_under_root(fake, version, buildable):
    fake.program("hipcc", "HIP version: 6.2.41134", where=fake.root / "opt/rocm/bin")
    fake.file("/opt/rocm/.info/version", version + "\n")
    fake.file("/sys/bus/pci/devices/0000:03:00.0/class", "0x030000\n")
    fake.file("/sys/bus/pci/devices/0000:03:00.0/vendor", "0x1002\n")
    fake.file("/sys/bus/pci/devices/0000:03:00.0/device", "0x744c\n")
    machine = fake.cpu("haswell.txt").detect()
    rocm = machine.toolkits.rocm
    assert (rocm.buildable, rocm.version, rocm.runtime) == (buildable, version.split("-")[0], True)
    assert machine.gpus[0].vendor == "amd"
    d = BuildConfig.for_machine(machine).cmake_defines()
    assert d["GGML_HIP"] == ("ON" if buildable else "OFF")
    if not buildable:
        assert "older than 6.1" in rocm.summary


def _vulkan_sdk(fake: Fake, icd: str) -> None:
    fake.program("glslc", "shaderc v2023.8 v2023.8\nspirv-tools v2023.6 v2023.6\nTarget: SPIR-V 1.0")
    fake.file("/usr/include/vulkan/vulkan.h", "#include \"vulkan_core.h\"\n")
    fake.file("/usr/include/vulkan/vulkan_core.h", "#define VK_HEADER_VERSION 239\n")
    fake.file("/usr/lib/x86_64-linux-gnu/libvulkan.so")
    fake.file("/usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake")
    fake.file(f"/usr/share/vulkan/icd.d/{icd}", "{}")
    fake.file("/dev/dri/renderD128")  # a GPU the driver can drive


@posix_only
def test_vulkan_needs_its_sdk_pieces_and_a_gpu_driver(fake):
    _vulkan_sdk(fake, "radeon_icd.x86_64.json")
    machine = fake.cpu("haswell.txt").detect()
    assert machine.toolkits.vulkan.buildable and machine.toolkits.vulkan.runtime
    assert BuildConfig.for_machine(machine).backends == (Backend.CPU, Backend.VULKAN)
    (fake.root / "usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake").unlink()
    vk = fake.detect().toolkits.vulkan
    assert not vk.buildable and "SPIRV-Headers" in vk.summary


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="render nodes are Linux's")
def test_vulkan_drivers_without_a_gpu_are_not_chosen(fake):
    _vulkan_sdk(fake, "intel_icd.x86_64.json")  # Mesa's drivers come installed on GPU-less machines too
    (fake.root / "dev/dri/renderD128").unlink()
    machine = fake.cpu("haswell.txt").detect()
    assert machine.toolkits.vulkan.buildable and not machine.toolkits.vulkan.runtime
    assert "no GPU" in machine.toolkits.vulkan.runtime_summary
    assert BuildConfig.for_machine(machine).backends == (Backend.CPU,)


@posix_only
def test_vulkan_on_lavapipe_only_is_not_chosen(fake):
    _vulkan_sdk(fake, "lvp_icd.x86_64.json")
    config = BuildConfig.for_machine(fake.cpu("haswell.txt").detect())
    assert config.backends == (Backend.CPU,) and "nothing to run it on" in config.reasons["vulkan"]


@posix_only
@pytest.mark.parametrize("icd, chosen", [("intel.icd", True), ("pocl.icd", False)])
def test_opencl_needs_headers_loader_and_a_supported_driver(fake, icd, chosen):
    fake.file("/usr/include/CL/cl.h", "/* OpenCL */\n")
    fake.file("/usr/lib/libOpenCL.so")
    fake.file(f"/etc/OpenCL/vendors/{icd}", "libfake.so\n")
    machine = fake.cpu("haswell.txt").detect()
    assert machine.toolkits.opencl.buildable
    config = BuildConfig.for_machine(machine)
    assert (Backend.OPENCL in config.backends) is chosen
    assert config.cmake_defines()["GGML_OPENCL"] == ("ON" if chosen else "OFF")


@posix_only
def test_nothing_installed_is_absent_not_an_error(fake):
    machine = fake.cpu("haswell.txt").detect()
    assert machine.problems == ()
    assert not any(t.buildable for t in machine.toolkits if t.name != "metal")
    assert not machine.cmake.present and not machine.ninja.present and machine.cxx is None
    assert "no-compiler" in {p.code for p in machine.pitfalls}
    assert BuildConfig.for_machine(machine).backends == (Backend.CPU,)


# --- compilers, tools, pitfalls -----------------------------------------------------------------

@pytest.mark.parametrize("text, family, version", [
    (GCC12, "gcc", "12.2.0"),
    ("gcc (GCC) 13.2.1 20231205 (Red Hat 13.2.1-6)\nCopyright (C) 2023 Free Software Foundation, Inc.", "gcc",
     "13.2.1"),
    ("Debian clang version 16.0.6 (15~deb12u1)\nTarget: x86_64-pc-linux-gnu", "clang", "16.0.6"),
    ("Apple clang version 15.0.0 (clang-1500.1.0.2.5)\nTarget: arm64-apple-darwin23.2.0", "apple-clang", "15.0.0"),
])
def test_compiler_versions(text, family, version):
    assert parse_compiler_version(text) == (family, version)


@posix_only
@pytest.mark.parametrize("gcc, fix", [(GCC12, True), (GCC13, False)])
def test_gcc_before_13_with_amx_notes_the_tile_config_fix(fake, gcc, fix):
    fake.program("c++", gcc)
    machine = fake.cpu("sapphire_rapids.txt").detect()
    assert machine.cxx is not None and machine.cxx.family == "gcc"
    pitfall = next((p for p in machine.pitfalls if p.code == "gcc-amx-tilecfg"), None)
    assert (pitfall is not None) is fix
    config = BuildConfig.for_machine(machine)
    assert "AMX_INT8" in config.instruction_sets  # AMX stays on either way
    assert any("ggml_amx_tilecfg_fix.h" in n for n in config.notes) is fix
    if fix:
        assert pitfall.handled and "SIGILL" in pitfall.message
        # a portable build without AMX needs no fix
        assert not any("amx" in n for n in BuildConfig.for_machine(machine, target="icelake").notes)


@posix_only
def test_an_amx_cpu_without_gcc_needs_no_fix(fake):
    fake.program("clang++", "Debian clang version 16.0.6 (15~deb12u1)\nTarget: x86_64-pc-linux-gnu")
    machine = fake.cpu("sapphire_rapids.txt").detect()
    assert machine.cxx.family == "clang" and "gcc-amx-tilecfg" not in {p.code for p in machine.pitfalls}


@posix_only
def test_a_compiler_too_old_for_the_cpu(fake):
    fake.program("c++", GCC10)
    machine = fake.cpu("sapphire_rapids.txt").detect()
    old = next(p for p in machine.pitfalls if p.code == "compiler-too-old-for-cpu")
    assert "amx_int8" in old.message and "avx_vnni" in old.message
    native = BuildConfig.for_machine(machine)
    assert "AMX_INT8" not in native.instruction_sets and "AVX512_BF16" in native.instruction_sets
    spr = BuildConfig.for_machine(machine, target="sapphirerapids")
    assert spr.cmake_defines()["GGML_AMX_INT8"] == "OFF" and spr.cmake_defines()["GGML_AVX512_VNNI"] == "ON"
    assert any("cannot emit AMX_TILE AMX_INT8" in n for n in spr.notes)


@posix_only
def test_cxx_environment_variable_wins(fake):
    fake.program("c++", GCC12)
    fake.program("clang++", "clang version 18.1.3\nTarget: x86_64-unknown-linux-gnu")
    fake.env["CXX"] = "clang++"
    machine = fake.detect()
    assert (machine.cxx.name, machine.cxx.family, machine.cxx.version) == ("clang++", "clang", "18.1.3")
    assert "$CXX" in machine.cxx.detail


@posix_only
def test_cmake_and_ninja_versions(fake):
    fake.program("cmake", "cmake version 3.18.4\n\nCMake suite maintained and supported by Kitware (kitware.com/cmake).")
    fake.program("ninja", "1.11.1.git.kitware.jobserver-1")
    machine = fake.detect()
    assert (machine.cmake.version, machine.ninja.version) == ("3.18.4", "1.11.1")
    assert "cmake-too-old" in {p.code for p in machine.pitfalls}
    assert {t.name for t in machine.python_packages} == {"scikit-build-core", "nanobind", "cmake", "ninja"}


@posix_only
def test_probes_are_bounded_in_time(fake):
    fake.program("nvcc", script=f"exec {shutil.which('sleep')} 30\n")
    start = time.monotonic()
    machine = fake.detect(timeout=0.5)
    assert time.monotonic() - start < 10
    assert not machine.toolkits.cuda.buildable and "did not report a version" in machine.toolkits.cuda.summary


def test_a_failing_probe_is_recorded_and_the_rest_still_runs(fake, monkeypatch):
    def broken(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(machine_mod, "_vulkan", broken)
    machine = fake.cpu("haswell.txt").detect()
    assert machine.problems == ("vulkan: RuntimeError: boom",)
    assert not machine.toolkits.vulkan.buildable and machine.cpu.has("avx2")


# --- config -> defines ---------------------------------------------------------------------------

def _machine(fake: Fake, sample: str, cxx: str = GCC13):
    if os.name == "posix":
        fake.program("c++", cxx)
    return fake.cpu(sample).detect()


def test_native_is_the_default_and_names_the_closest_ggml_variant(fake):
    machine = _machine(fake, "sapphire_rapids.txt")
    config = BuildConfig.for_machine(machine)
    d = config.cmake_defines()
    assert (config.cpu_variant, config.cpu_target, d["GGML_NATIVE"]) == (CpuVariant.NATIVE, "native", "ON")
    assert not any(k.startswith("GGML_AVX") for k in d)  # -march=native decides; no per-ISA switches
    assert "sapphirerapids" in config.reasons["cpu_target"]


def test_no_avx2_means_no_avx2_flags_and_a_lower_level(fake):
    machine = _machine(fake, "westmere_sse42.txt")
    native = BuildConfig.for_machine(machine)
    assert native.instruction_sets == ("SSE42",) and "AVX2" not in " ".join(native.cmake_args())
    portable = BuildConfig.for_machine(machine, portable=True)
    assert portable.instruction_sets == ("SSE42",) and "this CPU would load sse42" in portable.reasons["cpu_target"]
    fixed = BuildConfig.for_machine(machine, target="sse42")
    d = fixed.cmake_defines()
    assert fixed.cpu_variant is CpuVariant.FIXED and d["LLAMAPROC_PORTABLE"] == "OFF"
    assert (d["GGML_NATIVE"], d["GGML_SSE42"], d["GGML_AVX"], d["GGML_AVX2"], d["GGML_FMA"]) == (
        "OFF", "ON", "OFF", "OFF", "OFF")


def test_haswell_fixed_level_build(fake):
    config = BuildConfig.for_machine(_machine(fake, "haswell.txt"), target="haswell")
    d = config.cmake_defines()
    assert config.cpu_target == "haswell"
    assert [k for k, v in d.items() if k.startswith(("GGML_AVX", "GGML_AMX", "GGML_SSE", "GGML_FMA", "GGML_F16C",
                                                     "GGML_BMI")) and v == "ON"] == [
        "GGML_SSE42", "GGML_AVX", "GGML_F16C", "GGML_FMA", "GGML_AVX2", "GGML_BMI2"]
    assert d["GGML_AVX512"] == "OFF" and d["GGML_AMX_INT8"] == "OFF"


def test_portable_builds_every_level_and_names_the_one_this_cpu_loads(fake):
    machine = _machine(fake, "sapphire_rapids.txt", GCC12)
    config = BuildConfig.for_machine(machine, portable=True)
    d = config.cmake_defines()
    assert config.cpu_variant is CpuVariant.PORTABLE and config.cpu_target == "all"
    assert (d["LLAMAPROC_PORTABLE"], d["GGML_NATIVE"], d["GGML_BACKEND_DL"], d["GGML_CPU_ALL_VARIANTS"]) == (
        "ON", "OFF", "ON", "ON")
    assert not any(k.startswith(("GGML_AVX", "GGML_AMX", "GGML_SSE")) for k in d)  # each variant sets its own
    assert "this CPU would load sapphirerapids" in config.reasons["cpu_target"]
    native = BuildConfig.for_machine(machine)
    assert any("-mno-avx512fp16" in n and "LLAMAPROC_AVX512FP16=ON" in n for n in native.notes)
    assert not any("avx512fp16" in n for n in BuildConfig.for_machine(_machine(fake, "haswell.txt")).notes)
    assert "AMX_INT8" in config.instruction_sets and any("tile" in n for n in config.notes)  # the AMX fix applies
    assert "-Cbuild-dir=build/portable-{wheel_tag}" in config.pip_install_command(python="python")
    with pytest.raises(ConfigError, match="ask for one of them"):
        BuildConfig.for_machine(machine, portable=True, target="haswell")
    spr = BuildConfig.for_machine(machine, target="sapphirerapids")
    assert spr.cpu_variant is CpuVariant.FIXED
    assert {k for k, v in spr.cmake_defines().items() if v == "ON" and k.startswith("GGML_AMX")} == {
        "GGML_AMX_TILE", "GGML_AMX_INT8"}


def test_a_target_beyond_this_cpu_is_allowed_with_a_note(fake):
    config = BuildConfig.for_machine(_machine(fake, "haswell.txt"), target="skylakex")
    assert config.cmake_defines()["GGML_AVX512"] == "ON"
    assert any("AVX512" in n and "lacks" in n for n in config.notes)


def test_arm_portable_targets_use_ggml_cpu_arm_arch(fake):
    machine = _machine(fake, "neoverse_v1_sve.txt")
    native = BuildConfig.for_machine(machine)
    assert native.instruction_sets == ("DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8")
    assert "armv8.6_1" in native.reasons["cpu_target"]
    base = BuildConfig.for_machine(machine, target="armv8.2_2").cmake_defines()
    assert base["GGML_CPU_ARM_ARCH"] == "armv8.2-a+dotprod+fp16"
    assert not any(k.startswith(("GGML_AVX", "GGML_SSE")) for k in base)
    v1 = BuildConfig.for_machine(machine, target="armv8.6_1").cmake_defines()
    assert v1["GGML_CPU_ARM_ARCH"] == "armv8.6-a+dotprod+fp16+sve+i8mm"


def test_arm_march_and_cuda_lists_follow_ggml():
    assert arm_march([]) == "armv8-a"
    assert arm_march(["DOTPROD", "FP16_VECTOR_ARITHMETIC", "SVE", "MATMUL_INT8", "SVE2", "SME"]) == \
        "armv9.2-a+dotprod+fp16+sve+i8mm+sve2+sme"
    assert ggml_cuda_architectures("13.0.88") == ("75-virtual;80-virtual;86-real;89-real;90-virtual;120a-real;"
                                                 "121a-real")
    assert ggml_cuda_architectures("11.7") == "50-virtual;61-virtual;70-virtual;75-virtual;80-virtual;86-real"
    assert list(cpu_targets("x86_64"))[-1] == "sapphirerapids" and cpu_targets("riscv64") == {}


def test_every_backend_switch_is_written_out(fake):
    d = BuildConfig.for_machine(_machine(fake, "haswell.txt")).cmake_defines()
    assert {k: d[k] for k in ("GGML_CUDA", "GGML_HIP", "GGML_VULKAN", "GGML_OPENCL", "GGML_METAL",
                              "GGML_BACKEND_DL", "GGML_CPU_ALL_VARIANTS")} == dict.fromkeys(
        ("GGML_CUDA", "GGML_HIP", "GGML_VULKAN", "GGML_OPENCL", "GGML_METAL", "GGML_BACKEND_DL",
         "GGML_CPU_ALL_VARIANTS"), "OFF")
    assert list(d)[:2] == ["CMAKE_BUILD_TYPE", "GGML_NATIVE"]


def test_requested_backends_win_and_missing_toolkits_are_noted(fake):
    machine = _machine(fake, "haswell.txt")
    config = BuildConfig.for_machine(machine, backends=["vulkan", "CUDA"])
    assert config.backends == (Backend.CPU, Backend.CUDA, Backend.VULKAN)
    d = config.cmake_defines()
    assert (d["GGML_CUDA"], d["GGML_VULKAN"], d["GGML_OPENCL"]) == ("ON", "ON", "OFF")
    assert sum("will fail to configure" in n for n in config.notes) == 2
    assert BuildConfig.for_machine(machine, backends=["cpu"]).backends == (Backend.CPU,)
    with pytest.raises(ConfigError, match="unknown backend"):
        BuildConfig.for_machine(machine, backends=["directx"])
    with pytest.raises(ConfigError, match="unknown CPU target"):
        BuildConfig.for_machine(machine, target="pentium4")
    with pytest.raises(ConfigError, match="build type"):
        BuildConfig.for_machine(machine, build_type="Fast")


@posix_only
def test_every_choice_has_a_one_line_reason(fake):
    fake.program("nvcc", NVCC.format("12.4", "12.4.131"))
    config = BuildConfig.for_machine(_machine(fake, "haswell.txt"))
    assert set(config.reasons) == {"backends", "cpu", "cuda", "rocm", "vulkan", "opencl", "metal", "cpu_variant",
                                   "cpu_target", "instruction_sets", "build_type", "cuda_architectures", "backend_dl"}
    assert all(r and "\n" not in r for r in config.reasons.values())


def test_pip_install_command(fake):
    config = BuildConfig.for_machine(_machine(fake, "haswell.txt"), target="haswell", build_type="RelWithDebInfo")
    cmd = config.pip_install_command(python="python")
    assert cmd[:5] == ["python", "-m", "pip", "install", "-v"] and cmd[-1] == "."
    assert "-Ccmake.build-type=RelWithDebInfo" in cmd and "-Ccmake.define.CMAKE_BUILD_TYPE=RelWithDebInfo" not in cmd
    assert "-Ccmake.define.GGML_NATIVE=OFF" in cmd and "-Ccmake.define.GGML_AVX2=ON" in cmd
    assert "-DCMAKE_BUILD_TYPE=RelWithDebInfo" in config.cmake_args()
    dev = config.pip_install_command(python="python", editable=True)
    assert "--no-build-isolation" in dev and dev[-2:] == ["-e", "."]
    assert config.pip_install_line(python="python").startswith("python -m pip install -v -Ccmake.build-type=")


def _ggml_options() -> set[str]:
    # the checkout this test file belongs to (an installed llamaproc is not beside vendor/)
    src = Path(os.environ.get("LLAMAPROC_LLAMA_CPP_DIR") or Path(__file__).resolve().parent.parent / "vendor" / "llama.cpp")
    ggml = src / "ggml" / "CMakeLists.txt"
    if not ggml.is_file():
        pytest.skip(f"no llama.cpp source at {src} (set LLAMAPROC_LLAMA_CPP_DIR)")
    return set(re.findall(r"option\((GGML_\w+)", ggml.read_text())) | set(
        re.findall(r"set\((GGML_\w+)\s+\"[^\"]*\"\s+CACHE", ggml.read_text()))


def test_define_names_are_ggml_options(fake):
    options = _ggml_options()
    names: set[str] = set()
    for sample, kw in (("haswell.txt", {"portable": True}), ("haswell.txt", {"target": "haswell"}),
                       ("neoverse_v1_sve.txt", {"target": "armv8.6_1"}),
                       ("sapphire_rapids.txt", {"backends": ["cuda", "vulkan", "opencl", "rocm", "metal"]})):
        names |= set(BuildConfig.for_machine(_machine(fake, sample), **kw).cmake_defines())
    assert {n for n in names if n.startswith("GGML_")} <= options


# --- the CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def fake_detect(fake, monkeypatch):
    if os.name == "posix":
        fake.program("nvcc", NVCC.format("12.4", "12.4.131"))
    machine = _machine(fake, "sapphire_rapids.txt", GCC12)
    monkeypatch.setattr(build_cli, "detect", lambda: machine)
    return machine


def test_build_config_text(fake_detect, capsys):
    assert cli_main(["build-config"]) == 0
    out = capsys.readouterr().out
    config = BuildConfig.for_machine(fake_detect)
    assert "Intel(R) Xeon(R) Platinum 8488C" in out and "pitfall (handled)" in out
    for key, label in (("backends", "backends"), ("cpu_variant", "cpu variant"), ("cpu_target", "cpu target"),
                       ("instruction_sets", "instruction sets"), ("build_type", "build type")):
        line = next(l for l in out.splitlines() if l.startswith(label))
        assert config.reasons[key] in line
    assert "  -DGGML_NATIVE=ON" in out.splitlines() and config.pip_install_line() in out


def test_build_config_json(fake_detect, capsys):
    assert cli_main(["build-config", "--json", "--portable", "--backend", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["machine"]["cpu"]["model"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert data["machine"]["toolkits"]["cuda"]["version"] == (None if os.name != "posix" else "12.4.131")
    config = data["config"]
    assert config["backends"] == ["cpu"] and config["cpu_variant"] == "portable" and config["cpu_target"] == "all"
    assert config["cmake_defines"]["GGML_CUDA"] == "OFF" and config["cmake_defines"]["LLAMAPROC_PORTABLE"] == "ON"
    assert set(config["reasons"]) >= {"backends", "cpu_variant", "cpu_target", "instruction_sets", "build_type"}
    assert config["pip_install"][-1] == "."


def test_build_config_rejects_an_unknown_target(fake_detect, capsys):
    assert cli_main(["build-config", "--target", "pentium4"]) == 2
    assert "unknown CPU target 'pentium4'" in capsys.readouterr().err


# --- no _core needed ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def src_without_core(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("src") / "src"
    shutil.copytree(SRC / "llamaproc", dst / "llamaproc",
                    ignore=shutil.ignore_patterns("__pycache__", "_core*.so", "_core*.pyd", "_core*.pyi"))
    return dst


def _run_without_core(src: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(src)}
    # -S: no site-packages, so neither an installed llamaproc nor an editable install's import
    # hook can stand in for the source copy (detection needs only the standard library)
    return subprocess.run([sys.executable, "-S", *args], cwd=src, env=env, capture_output=True, text=True,
                          timeout=120)


def test_build_detection_imports_and_runs_without_core(src_without_core):
    r = _run_without_core(src_without_core, "-c", textwrap.dedent("""\
        import sys
        import llamaproc.build
        from llamaproc.build import BuildConfig, detect
        assert llamaproc.__file__.startswith(sys.argv[1]), llamaproc.__file__
        config = BuildConfig.for_machine(detect())
        assert config.cmake_defines()["GGML_NATIVE"] == "ON"
        assert not [m for m in sys.modules if m.startswith("llamaproc._")], sorted(sys.modules)
        from llamaproc.errors import BuildError
        try:
            from llamaproc import LlamaServer
        except BuildError as exc:
            assert "pip install" in str(exc)
        else:
            raise AssertionError("LlamaServer imported without _core")
        print("ok")
        """), str(src_without_core))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.parametrize("argv", [["-m", "llamaproc", "build-config", "--json"], ["-m", "llamaproc.build", "--json"]])
def test_the_cli_runs_from_a_source_tree_without_core(src_without_core, argv):
    r = _run_without_core(src_without_core, *argv)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["config"]["cmake_defines"]["CMAKE_BUILD_TYPE"] == "Release"
    assert data["machine"]["cpu"]["arch"] and data["machine"]["problems"] == []


def test_public_names_resolve_lazily_to_their_modules():
    lazy = llamaproc._LAZY
    assert set(lazy) == set(llamaproc.__all__) - {"errors", "__version__"}
    assert set(llamaproc.__all__) <= set(dir(llamaproc))
    for name, module in lazy.items():
        path = SRC / "llamaproc" / f"{module.replace('.', '/')}.py"
        assert re.search(rf"^(class|def) {name}\b|^{name} = ", path.read_text(), re.M), (name, module)
    with pytest.raises(AttributeError):
        llamaproc.no_such_name  # noqa: B018


def test_public_names_are_the_modules_objects():
    pytest.importorskip("llamaproc._core", reason="needs the built extension")
    from llamaproc import quant, server

    assert llamaproc.LlamaServer is server.LlamaServer and llamaproc.quantize is quant.quantize
    for name in llamaproc.__all__:
        assert getattr(llamaproc, name) is not None
