"""Every workflow of the monorepo is a nox session.

nox -s demo        the main job: train a2mamba_test on Fashion-MNIST, report test accuracy
nox -s tests       all packages' tests in one venv (torch pinned)
nox -s tests_ops   the ops alone, in a venv holding only torch (+ build tools)
nox -s build_cuda  compile-and-link check of the CUDA kernels (skips without nvcc)
nox -s cuda_emulation  the CUDA kernels' logic checked on the CPU against the reference (no GPU)
nox -s cuda_report     static report of the compiled CUDA kernels (registers, spills, occupancy; no GPU)
nox -s bench       pytest-benchmark of the kernels, JSON + table under benchmarks/results/
nox -s cpu_targets the CPU speed targets side by side in one run, JSON + table + plot under benchmarks/results/
nox -s shared_cores  throughput with one core busy, per thread count and OpenMP wait policy, under benchmarks/results/
nox -s export_check  ONNX export of the five variants checked in onnxruntime + a2mamba_n latency in both runtimes
nox -s asv         asv quick suite on the current commit + HTML report (.asv/html)
nox -s asv_history -- A..B   asv over a commit range, per-commit environments
nox -s asv_compare [-- A B]  fail on a >10 % slowdown or an accuracy drop (default main~1 -> main)
nox -s timm_contract  timm's own model tests (from the installed release's sdist) against our models
nox -s lint        ruff check + ruff format --check
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
OPS = ROOT / "packages" / "a2mamba-ops"
MODELS = ROOT / "packages" / "a2mamba-models"
TRAIN = ROOT / "packages" / "a2mamba-train"

# CI and the GPU machine pin these; pip on the dev machines takes them from local disk.
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
BUILD_TOOLS = ["scikit-build-core>=0.10", "cmake>=3.24", "ninja"]
TEST_TOOLS = ["pytest>=8", "numpy"]
RUFF = "ruff==0.17.6"  # pinned: a new ruff release must not turn CI red on its own
CUDA_WHEEL_DIR = "cuda-wheel"  # build_cuda keeps its wheel here (in its session tmp) for cuda_report

nox.options.sessions = ["lint", "tests"]
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
nox.options.reuse_existing_virtualenvs = True


TORCH_LAYERS = ROOT / ".nox" / "_torch"


def venv_python_output(session: nox.Session, code: str) -> str:
    """What `python -c code` prints in the session's venv, in every nox mode: the install steps need
    it, and nox skips session.run under --install-only and session.run_install under -R/--no-install."""
    python = Path(session.bin) / "python"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def install_torch(session: nox.Session) -> None:
    """The pinned torch and torchvision, installed once per checkout and shared by the sessions' venvs.

    The CUDA build of torch with its NVIDIA libraries is ~5 GB: installing it into every venv costs
    minutes and disk per session. Instead it is installed once (`pip install --target`) into
    .nox/_torch/<python>, and each venv reads it through a .pth file, so pip in the venv sees it as
    installed and the venv's own packages still come first. `nox -s tests_ops` keeps a plain install.
    """
    python = venv_python_output(session, "import sys; print('%d.%d' % sys.version_info[:2])")
    layer = TORCH_LAYERS / f"py{python}-{'-'.join(TORCH).replace('==', '')}"
    if not (layer / ".complete").exists():
        partial = layer.with_name(layer.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        session.run_install("python", "-m", "pip", "install", "--quiet", "--target", str(partial), *TORCH)
        (partial / ".complete").write_text("\n".join(TORCH) + "\n")
        shutil.rmtree(layer, ignore_errors=True)
        partial.rename(layer)
    site = venv_python_output(session, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(site) / "a2mamba_shared_torch.pth").write_text(f"{layer}\n")
    session.run_install(
        "python", "-c", "import torch, torchvision; print('torch', torch.__version__, 'from', torch.__file__)"
    )


# What decides the ops wheel besides its sources: a change to any of these builds a new one.
OPS_BUILD_ENVIRONMENT = (
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "LDFLAGS",
    "CMAKE_ARGS",
    "A2MAMBA_WERROR",
    "A2MAMBA_CPU_DISPATCH",
)
OPS_WHEEL_CACHE = ROOT / ".nox" / "_ops-wheels"
OPS_WHEELS_KEPT = 4


def ops_wheel_key(session: nox.Session, cuda: str) -> str:
    """Digest of the ops sources, the venv's Python and torch, and the build settings."""
    skipped_dirs = {"build", "_skbuild", "dist", "__pycache__", "tests", "tools"}
    digest = hashlib.sha256()
    for path in sorted(OPS.rglob("*")):
        relative = path.relative_to(OPS)
        if not path.is_file() or skipped_dirs & set(relative.parts[:-1]) or path.suffix in {".so", ".pyc"}:
            continue
        if path.name == "_build_manifest.json":  # written by the build itself
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    versions = venv_python_output(session, "import sys, torch; print(sys.version, torch.__version__)")
    settings = [f"A2MAMBA_CUDA={cuda}", versions] + [f"{k}={os.environ.get(k, '')}" for k in OPS_BUILD_ENVIRONMENT]
    digest.update("\n".join(settings).encode())
    return digest.hexdigest()[:20]


def pip_wheel_ops(session: nox.Session, wheel_dir: Path, env: dict[str, str]) -> None:
    """Build the ops wheel into `wheel_dir` against the venv's torch (no build isolation, no second torch)."""
    session.run_install("pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(wheel_dir), str(OPS), env=env)


def install_ops(session: nox.Session, *, cuda: str = "OFF") -> None:
    """Install the ops, built against the venv's torch (no second torch in a build env).

    The wheel is built once per source state and kept in .nox/_ops-wheels: every later session
    (tests, emulation, benchmarks, timm's suite) installs the same build instead of compiling the
    three CPU variants again.
    """
    folder = OPS_WHEEL_CACHE / ops_wheel_key(session, cuda)
    wheels = sorted(folder.glob("a2mamba_ops-*.whl"))
    if wheels:
        session.log(f"installing the cached build {wheels[-1].name} ({folder.name})")
    else:
        session.install(*BUILD_TOOLS)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        pip_wheel_ops(session, partial, {"A2MAMBA_CUDA": cuda, "CMAKE_BUILD_PARALLEL_LEVEL": "2"})
        partial.rename(folder)  # complete wheels only: an interrupted build leaves no cache entry
        wheels = sorted(folder.glob("a2mamba_ops-*.whl"))
        # Keep the newest few source states (switching branches back and forth stays cheap).
        entries = sorted((p for p in OPS_WHEEL_CACHE.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for stale in entries[:-OPS_WHEELS_KEPT]:
            shutil.rmtree(stale, ignore_errors=True)
    session.install("--no-deps", "--force-reinstall", str(wheels[-1]))


def install_all(session: nox.Session) -> None:
    install_torch(session)
    install_ops(session)
    # Models and train are pure Python; install them with their remaining dependencies.
    # pytest-benchmark: benchmarks/pytest_bench needs its fixture wherever pytest collects benchmarks/.
    session.install(f"{MODELS}[test]", str(TRAIN), *TEST_TOOLS, "pytest-benchmark", "pytest-xdist")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package's tests, in one venv holding all three packages."""
    install_all(session)
    session.run("python", "-m", "a2mamba_ops")
    # One pytest run per package: each package's tests/ has its own conftest helpers.
    # pytest exits 5 when it collects nothing, which fails the session: no silent "0 tests".
    # The models and train suites run one torch thread per test, so they run on every core (pytest-xdist):
    # a whole file per worker (test_export exports one model per module; DDP runs share a baseline).
    # The ops suite keeps the default threads (it checks results across thread counts).
    workers = str(min(4, os.cpu_count() or 1))
    for package, parallel in (
        (OPS, []),
        (MODELS, ["-n", workers, "--dist", "loadfile"]),
        (TRAIN, ["-n", workers, "--dist", "loadfile"]),
    ):
        session.run(
            "python",
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-ra",
            *parallel,
            "--rootdir",
            str(package),
            str(package / "tests"),
            *session.posargs,
        )
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-q", str(ROOT / "benchmarks" / "tests"))


def ensure_fashion_mnist(session: nox.Session) -> None:
    """The demo's data is a Debian package; install it when we can (root), else say how."""
    if subprocess.run(["dpkg", "-s", FASHION_MNIST_PACKAGE], capture_output=True).returncode == 0:
        return
    if os.geteuid() != 0:
        session.error(f"Fashion-MNIST is missing: run `sudo apt-get install {FASHION_MNIST_PACKAGE}` and retry")
    session.run("apt-get", "update", "-qq", external=True)
    session.run("apt-get", "install", "-y", "-qq", FASHION_MNIST_PACKAGE, external=True)


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The main job: train a2mamba_test on Fashion-MNIST (CPU, ~5 min on 2 cores), print test accuracy."""
    ensure_fashion_mnist(session)
    install_all(session)
    session.run("a2mamba-train", "--recipe", "fashion-mnist", *session.posargs)


@nox.session(python="3.11")
def tests_ops(session: nox.Session) -> None:
    """The ops package alone: proves it installs and works with nothing but torch."""
    session.install(TORCH[0])
    install_ops(session)
    session.install(*TEST_TOOLS)
    session.run("python", "-m", "a2mamba_ops")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-ra", str(OPS / "tests"), *session.posargs)


def build_cuda_wheel(session: nox.Session, nvcc: str, arch_list: str, wheel_dir: Path, build_dir: Path) -> list[Path]:
    """A wheel of the ops with the CUDA kernels for `arch_list`, warnings as errors."""
    pip_wheel_ops(
        session,
        wheel_dir,
        {
            "A2MAMBA_CUDA": "ON",
            "A2MAMBA_WERROR": "ON",
            # The CPU variants are built and tested by `nox -s tests`; here only the CUDA code matters.
            "A2MAMBA_CPU_DISPATCH": "OFF",
            "TORCH_CUDA_ARCH_LIST": arch_list,
            "CUDACXX": nvcc,
            "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
            "SKBUILD_BUILD_DIR": str(build_dir),
        },
    )
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        # nox skips install steps under -R / --no-install, and building the wheel is one.
        session.error("no CUDA wheel was built: run this session without -R / --no-install")
    return wheels


@nox.session(python="3.11")
def build_cuda(session: nox.Session) -> None:
    """Compile and link every CUDA source, warnings as errors. Nothing runs.

    Architectures: the package default (sm_80, sm_90, PTX of sm_90), so the check builds what
    `pip install` builds; a list of several archs also exercises how the build reports them.
    """
    nvcc = shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))
    if nvcc is None:
        session.skip("nvcc not found: the CUDA kernels cannot be compiled on this machine")
    install_torch(session)
    session.install(*BUILD_TOOLS)
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    # The wheel is kept (CUDA_WHEEL_DIR) for `nox -s cuda_report`, which reads its kernels.
    wheel_dir = Path(session.create_tmp()) / CUDA_WHEEL_DIR
    shutil.rmtree(wheel_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory() as build:
        # A fresh build dir, so this check never reuses a CPU-only configuration.
        wheels = build_cuda_wheel(session, nvcc, arch_list, wheel_dir, Path(build) / "build")
        session.log(f"CUDA build linked: {', '.join(w.name for w in wheels)}")
        # The wheel must import here (no GPU) and report the architectures it was built for.
        session.install("--no-deps", "--force-reinstall", *map(str, wheels))
        info = session.run("python", "-m", "a2mamba_ops", silent=True)
        archs = " ".join(arch_list.replace(";", " ").split())
        if f"cuda archs  {archs} " not in info:
            session.error(f"the CUDA build does not report archs {archs!r}:\n{info}")
        session.log(info)


@nox.session(python="3.11")
def cuda_emulation(session: nox.Session) -> None:
    """The CUDA kernels' logic (tiles, borders, dilation groups, reductions) on the CPU, against the
    float64 reference: each CUDA thread a fiber. No GPU, no nvcc; says nothing about speed."""
    install_torch(session)
    install_ops(session)
    session.run(
        "python",
        str(OPS / "tools" / "cuda_emulation" / "check_kernels.py"),
        "--build-dir",
        str(Path(session.create_tmp()) / "emulation-build"),
        "--bounds-check",
        *session.posargs,
    )


@nox.session(python="3.11")
def cuda_report(session: nox.Session) -> None:
    """Static report of the compiled CUDA kernels: benchmarks/results/cuda-static.{json,md}.

    Builds the library (default archs, or TORCH_CUDA_ARCH_LIST) in a kept build folder, reads
    registers, stack, local memory, shared memory and SASS with cuobjdump, and fails when a
    float32/float16/bfloat16 kernel has a stack frame or spills. No GPU; nothing runs.
    `-- --library PATH` reports on an existing build instead.
    """
    nvcc = shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))
    install_torch(session)
    session.install("nvidia-cuda-cuobjdump", "nvidia-cuda-nvdisasm")  # cuobjdump -sass runs nvdisasm
    results = ROOT / "benchmarks" / "results"
    report = [
        "python",
        str(OPS / "tools" / "cuda_static" / "static_report.py"),
        "--out-dir",
        str(results),
        "--baseline",
        str(results / "cuda-static-baseline.json"),
        "--check",
    ]
    if "--library" in session.posargs:
        session.run(*report, *session.posargs)
        return
    # The wheel `nox -s build_cuda` just built, when it is newer than every kernel source.
    wheels = sorted((Path(session.create_tmp()).parents[1] / "build_cuda" / "tmp" / CUDA_WHEEL_DIR).glob("*.whl"))
    newest_source = max(p.stat().st_mtime for p in (OPS / "csrc").rglob("*") if p.is_file())
    if wheels and wheels[-1].stat().st_mtime > newest_source:
        session.log(f"reading the kernels of {wheels[-1].name} (from nox -s build_cuda)")
    else:
        if nvcc is None:
            session.skip("nvcc not found: the CUDA kernels cannot be compiled on this machine")
        session.install(*BUILD_TOOLS)
        wheel_dir = Path(session.create_tmp()) / CUDA_WHEEL_DIR
        shutil.rmtree(wheel_dir, ignore_errors=True)
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        # A kept build dir: a rerun recompiles only what changed.
        wheels = build_cuda_wheel(session, nvcc, arch_list, wheel_dir, Path(session.create_tmp()) / "cuda-build")
    library = Path(session.create_tmp()) / "library"
    shutil.rmtree(library, ignore_errors=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        names = [n for n in wheel.namelist() if Path(n).name.startswith("_C") and n.endswith(".so")]
        wheel.extract(names[0], library)
    session.run(*report, "--library", str(library / names[0]), *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Kernel benchmarks (pytest-benchmark): every backend A2MAMBA_BENCH_ROUNDS rounds (default 5) in one run;
    JSON and the median table land in benchmarks/results/ops-<machine>.json/.md."""
    install_torch(session)
    install_ops(session)
    session.install("pytest>=8", "pytest-benchmark", "py-cpuinfo")
    # Named by a stable label (A2MAMBA_BENCH_MACHINE, else cpu-<N>core), never the host name.
    label = session.run("python", "-c", "from benchmarks.cases import machine; print(machine.label())", silent=True)
    out = ROOT / "benchmarks" / "results" / f"ops-{label.strip()}.json"
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        str(ROOT / "benchmarks" / "pytest_bench"),
        "--benchmark-save-data",
        f"--benchmark-json={out}",
        *session.posargs,
    )
    session.run("python", "-m", "benchmarks.tools.summarize", str(out), "-o", str(out.with_suffix(".md")))


@nox.session(python="3.11")
def cpu_targets(session: nox.Session) -> None:
    """The CPU speed targets (kernels against matmul and copy, models against resnet50, a profile), 2 threads,
    one run: benchmarks/results/cpu-targets-<machine>.json/.md/.png. `-- --rounds N` / `-- --tiny` pass through."""
    install_torch(session)
    install_ops(session)
    session.install(str(MODELS), "matplotlib")
    session.run(
        "python",
        "-m",
        "benchmarks.tools.cpu_targets",
        "--out",
        str(ROOT / "benchmarks" / "results"),
        *session.posargs,
    )


@nox.session(python="3.11")
def shared_cores(session: nox.Session) -> None:
    """a2mamba_n inference and attention with one core busy, per thread count and OpenMP wait policy, one run:
    benchmarks/results/shared-cores-<machine>.json/.md. `-- --rounds N` / `-- --tiny` pass through."""
    install_torch(session)
    install_ops(session)
    session.install(str(MODELS))
    session.run(
        "python",
        "-m",
        "benchmarks.tools.shared_cores",
        "--out",
        str(ROOT / "benchmarks" / "results"),
        *session.posargs,
    )


# asv times every suite in benchmarks/asv/ (each module there is one) per commit.
ASV_BENCH = r"."
# The quick run leaves out the Fashion-MNIST training run (minutes on two cores; `-- --bench FashionMNIST` adds it).
ASV_QUICK_BENCH = r"^(?!accuracy\.FashionMNIST)"
# Higher-is-better tracks: asv treats every number as lower-is-better, so the regression check leaves these out
# (their lower-is-better twins, time_* and track_error_pct, carry the signal; the targets suite is read, not gated).
ASV_COMPARE_BENCH = r"^(?!.*(img_per_s|gbps|copy_fraction|top1_pct|fraction_of|ratio_to))"
ASV_MACHINE = ["--machine", "cpu-2core"]  # one stable name, so results from CI-like machines line up


@nox.session(python="3.11")
def export_check(session: nox.Session) -> None:
    """ONNX export of the five variants checked in onnxruntime (1e-4 of the logit scale), and a2mamba_n's
    latency in onnxruntime and PyTorch: benchmarks/results/export-<machine>.json/.md. `--` args pass through."""
    install_torch(session)
    install_ops(session)
    session.install(f"{MODELS}[export]")
    session.run(
        "python",
        "-m",
        "benchmarks.tools.export_check",
        "--out",
        str(ROOT / "benchmarks" / "results"),
        *session.posargs,
    )


def record_asv_machine(session: nox.Session) -> None:
    """Name, CPU, cores, memory and OS (`asv machine --yes` alone records the name only)."""
    session.run("python", "-m", "benchmarks.tools.asv_results", "machine", ASV_MACHINE[1])


def install_for_asv(session: nox.Session) -> None:
    install_torch(session)
    install_ops(session)
    session.install("--no-build-isolation", "--no-deps", str(MODELS), str(TRAIN))
    session.install("timm", "tqdm", "matplotlib", "numpy", "pillow", "asv>=0.6.4")
    record_asv_machine(session)


def head_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@nox.session(python="3.11")
def asv(session: nox.Session) -> None:
    """Quick asv suite on the current commit, in this venv (--python=same); then the HTML report in .asv/html."""
    install_for_asv(session)
    session.run(
        "asv",
        "run",
        "--python=same",
        "--launch-method",
        "forkserver",
        *ASV_MACHINE,
        "--set-commit-hash",
        head_commit(),
        "--bench",
        ASV_QUICK_BENCH,
        "--show-stderr",
        *session.posargs,
    )
    # --python=same names the results after this venv's path: rename them to the Python version.
    session.run("python", "-m", "benchmarks.tools.asv_results", "rename", str(ROOT / "benchmarks" / "results" / "asv"))
    session.run("asv", "publish")
    session.log("report: .asv/html/index.html (asv preview serves it); results: benchmarks/results/asv/")


@nox.session(python="3.11")
def asv_history(session: nox.Session) -> None:
    """`nox -s asv_history -- HEAD~3..HEAD`: each commit built in asv's own virtualenv (torch from pip)."""
    if not session.posargs:
        session.error("give a commit range, e.g. `nox -s asv_history -- HEAD~3..HEAD`")
    session.install("asv>=0.6.4", "virtualenv")
    record_asv_machine(session)
    session.run(
        "asv",
        "run",
        "--launch-method",
        "forkserver",
        *ASV_MACHINE,
        "--bench",
        ASV_BENCH,
        "--skip-existing-successful",
        *session.posargs,
    )
    session.run("asv", "publish")


@nox.session(python="3.11")
def asv_compare(session: nox.Session) -> None:
    """`nox -s asv_compare [-- A B]`: fail on a >10 % slowdown or accuracy drop from A (main~1) to B (main)."""
    base, head = (session.posargs + ["main~1", "main"][len(session.posargs) :])[:2]
    session.install("asv>=0.6.4", "virtualenv")
    record_asv_machine(session)
    session.run(
        "asv",
        "continuous",
        "--launch-method",
        "forkserver",
        *ASV_MACHINE,
        "--factor",
        "1.1",
        "--bench",
        ASV_COMPARE_BENCH,
        "--split",
        base,
        head,
    )


# timm's own model tests that cannot apply to A2Mamba, each with its reason (see packages/a2mamba-models/README.md):
# - torchscript, fx_torchscript: TorchScript is deprecated in PyTorch 2 (torch.jit.script warns to use torch.compile
#   or torch.export); the ops choose their backend and check their arguments in Python, which TorchScript cannot
#   compile. torch.export, ONNX and torch.compile(fullgraph=True) are the supported ways to capture the model.
# - load_pretrained, features_pretrained: they download the published weights (network); loading them is
#   tested offline by our own suite (packages/a2mamba-models/tests/test_pretrained.py).
TIMM_CONTRACT_EXCLUDED = "not torchscript and not pretrained"
TIMM_CONTRACT_MODELS = {"all": "a2mamba", "quick": "(a2mamba_n or a2mamba_test)"}


@nox.session(python="3.11")
def timm_contract(session: nox.Session) -> None:
    """timm's tests/test_models.py, from the sdist of the installed timm release, run against our models.

    `-- --quick` (what CI runs): a2mamba_n and a2mamba_test only; the variants share all the code under
    test. Other `--` arguments pass to pytest.
    """
    args = list(session.posargs)
    models = TIMM_CONTRACT_MODELS["all"]
    if "--quick" in args:
        args.remove("--quick")
        models = TIMM_CONTRACT_MODELS["quick"]
    install_all(session)
    version = session.run("python", "-c", "import timm; print(timm.__version__)", silent=True).strip()
    download = Path(session.create_tmp()) / f"timm-{version}-sdist"
    shutil.rmtree(download, ignore_errors=True)
    session.run("pip", "download", "--no-binary", ":all:", "--no-deps", f"timm=={version}", "-d", str(download))
    (sdist,) = download.glob("timm-*.tar.gz")
    # Only the tests and timm's pytest settings (its markers): run against the installed timm, not the sources.
    root = f"timm-{version}"
    with tarfile.open(sdist) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.isfile() and (m.name.startswith(f"{root}/tests/") or m.name == f"{root}/pyproject.toml")
        ]
        archive.extractall(download, members=members, filter="data")
    tests = download / root / "tests"
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "a2mamba_models",  # registers the models before timm's tests enumerate them
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",  # timm's timeout marks (pytest-timeout not needed here)
        "-ra",
        "-c",
        str(tests.parent / "pyproject.toml"),
        "--rootdir",
        str(tests.parent),
        str(tests / "test_models.py"),
        "-k",
        f"{models} and {TIMM_CONTRACT_EXCLUDED}",
        "-n",
        str(min(4, os.cpu_count() or 1)),  # one torch thread per test (OMP_NUM_THREADS below)
        *args,
        env={"TORCH_DEVICE": "cpu", "OMP_NUM_THREADS": "1"},
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install(RUFF)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")
