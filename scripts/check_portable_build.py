"""Build the portable wheel (every CPU level, the best loaded at import) and check it, as one script.

    python scripts/check_portable_build.py [--build-dir build/portable] [--no-bench] [--keep DIR]

1. builds a wheel with ``LLAMAPROC_PORTABLE=ON`` into ``--build-dir`` (incremental on a second
   run; the first takes about 20 minutes on 2 cores: ggml's CPU backend is compiled 14 times);
2. installs it into a fresh virtual environment with the test dependencies;
3. runs tests/test_portable.py there (the variant this CPU gets, forced lower variants, the
   fallback, the AMX fix), the memory estimates under each repack path (AMX where the CPU has
   it, AVX-512, AVX2, plain x86-64) and the server, direct-call and HTTP tests against the
   portable build;
4. unless ``--no-bench``: benchmarks/bench_portable.py, decode of the portable build against
   the native one installed in this Python (target: within 5 %).

Exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from wheel_env import ROOT, build_wheel, finish, install_in_fresh_env, run

TESTS = ["tests/test_portable.py", "tests/test_memory_accounting.py", "tests/test_lifecycle.py",
         "tests/test_direct.py", "tests/test_http_api.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build/portable")
    parser.add_argument("--no-bench", action="store_true", help="skip the decode benchmark")
    parser.add_argument("--keep", metavar="DIR", help="build the environment in DIR and keep it")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="llamaproc-portable-"))
    work.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(["-Ccmake.define.LLAMAPROC_PORTABLE=ON", f"-Cbuild-dir={args.build_dir}"], work / "wheel")
    if wheel is None:
        return 1
    py = install_in_fresh_env(wheel, work / "venv")
    # from a folder without llamaproc's sources, so that `import llamaproc` finds the wheel
    ok = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c",
              str(ROOT / "pyproject.toml"), *(str(ROOT / t) for t in TESTS)], cwd=work).returncode == 0
    if ok and not args.no_bench:
        ok = run([sys.executable, str(ROOT / "benchmarks" / "bench_portable.py"), "--native", sys.executable,
                  "--portable", py], cwd=work).returncode == 0
    return finish("PORTABLE CHECK", ok, work, keep=bool(args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
