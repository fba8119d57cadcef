"""Runtime choice between the instruction-set variants of the CPU kernels.

The kernels are compiled for a baseline, AVX2+FMA and AVX-512 (on x86-64); the
best variant the CPU runs is chosen at import, A2MAMBA_CPU_CAPABILITY forces
one. That every supported variant computes the right thing is checked by
test_backends.py and test_library.py, which run each of them.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from a2mamba_ops import _native, cpu_capability

pytestmark = pytest.mark.skipif(not _native.has_cpu_kernels(), reason="native CPU kernels not built")

X86_64 = platform.machine().lower() in ("x86_64", "amd64")
# What each variant needs from the CPU, as /proc/cpuinfo names the features.
REQUIRED_FLAGS = {
    "avx2": {"avx2", "fma", "f16c"},
    "avx512": {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq"},
}


def cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else None


def run_python(code: str, capability: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(_native.CPU_CAPABILITY_ENV, None)
    if capability is not None:
        env[_native.CPU_CAPABILITY_ENV] = capability
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_every_variant_is_compiled_on_x86_64():
    expected = ["default", "avx2", "avx512"] if X86_64 else ["default"]
    assert _native.compiled_cpu_capabilities() == expected


@pytest.mark.skipif(not X86_64 or cpu_flags() is None, reason="needs an x86-64 CPU with /proc/cpuinfo")
def test_supported_variants_follow_the_cpu_features():
    # So that a CPU with AVX-512 really runs (and the tests really test) the AVX-512 kernels.
    flags = cpu_flags()
    expected = ["default"] + [name for name, needs in REQUIRED_FLAGS.items() if needs <= flags]
    assert _native.supported_cpu_capabilities() == expected


def test_import_chooses_the_best_supported_variant():
    result = run_python("import a2mamba_ops; print(a2mamba_ops.cpu_capability())", None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _native.supported_cpu_capabilities()[-1]


@pytest.mark.parametrize("variant", _native.supported_cpu_capabilities())
def test_environment_variable_forces_a_variant_and_the_report_says_so(variant):
    result = run_python("from a2mamba_ops.__main__ import main; main()", variant)
    assert result.returncode == 0, result.stderr
    assert f"cpu kernels {variant} (forced by {_native.CPU_CAPABILITY_ENV}" in result.stdout


def test_unusable_environment_value_warns_and_runs_the_best_variant():
    result = run_python("import a2mamba_ops; print(a2mamba_ops.cpu_capability())", "sse9")
    assert result.returncode == 0, result.stderr
    assert f"{_native.CPU_CAPABILITY_ENV}='sse9' ignored" in result.stderr
    assert result.stdout.strip() == _native.supported_cpu_capabilities()[-1]


def test_switching_variants_at_run_time():
    before = cpu_capability()
    for variant in _native.supported_cpu_capabilities():
        with _native.forced_cpu_capability(variant):
            assert cpu_capability() == variant
    assert cpu_capability() == before


def test_unknown_or_unsupported_variant_is_a_value_error():
    with pytest.raises(ValueError, match="CPU capability must be one of default"):
        _native.set_cpu_capability("sse9")
    unsupported = set(_native.compiled_cpu_capabilities()) - set(_native.supported_cpu_capabilities())
    for variant in unsupported:
        with pytest.raises(ValueError, match="this CPU cannot run it"):
            _native.set_cpu_capability(variant)
    assert cpu_capability() == _native.supported_cpu_capabilities()[-1]


# --------------------------------------------------------------------------- the machine code


def disassembly_by_function() -> dict[str, str]:
    """Function name (demangled) -> its instructions, from objdump of the extension."""
    result = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", _native._C.__file__], capture_output=True, text=True, check=True
    )
    functions, name, lines = {}, None, []
    for line in result.stdout.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            if name is not None:
                functions[name] = "\n".join(lines)
            name, lines = header.group(1), []
            # Code without a symbol of its own (a stripped local function) gets a label like
            # `<f()@@Base-0x18190>`: an offset from the nearest symbol, not a part of that function.
            if re.search(r"[+-]0x[0-9a-f]+$", name):
                name = f"<code without a symbol at {line.split()[0]}>"
        elif name is not None:
            lines.append(line)
    if name is not None:
        functions[name] = "\n".join(lines)
    return functions


# An AVX (VEX- or EVEX-encoded) instruction: every such mnemonic starts with v (verr/verw are older).
VEX = re.compile(r"^\s*[0-9a-f]+:\s+v(?!err|erw)[a-z]", re.MULTILINE)


@pytest.fixture(scope="module")
def functions():
    if shutil.which("objdump") is None:
        pytest.skip("needs objdump")
    return disassembly_by_function()


def code_of(functions: dict[str, str], variant: str) -> str:
    return "\n".join(body for name, body in functions.items() if f"a2mamba::cpu::cap_{variant}::" in name)


@pytest.mark.skipif(not X86_64, reason="x86-64 instruction sets")
def test_each_variant_uses_its_instruction_set(functions):
    default, avx2, avx512 = (code_of(functions, v) for v in ("default", "avx2", "avx512"))
    assert default and avx2 and avx512
    assert not VEX.search(default), "the baseline variant must run on any x86-64 CPU"
    assert re.search(r"vfmadd\w+\s+.*%ymm", avx2), "the avx2 variant has no 256-bit FMA"
    assert not re.search(r"%zmm", avx2), "the avx2 variant must not need AVX-512"
    assert re.search(r"%zmm", avx512), "the avx512 variant has no 512-bit code"


@pytest.mark.skipif(not X86_64, reason="x86-64 instruction sets")
def test_code_that_runs_on_any_x86_64_never_calls_avx_code(functions):
    # Inline functions of shared headers (ATen, the standard library) are emitted by each object
    # that calls them out of line, and the linker keeps one copy. The variants are linked in order
    # of demand (CMakeLists.txt), so a copy with AVX code can only come from a variant whose
    # baseline counterpart never calls it. Check exactly that: nothing outside the avx2/avx512
    # kernels that is itself plain x86-64 code calls or jumps to AVX code outside them.
    def in_variant(name: str) -> bool:
        return re.search(r"cap_avx(?:2|512)", name) is not None  # demangled, or mangled (OpenMP parts)

    wide_shared = {name for name, body in functions.items() if not in_variant(name) and VEX.search(body)}
    baseline = [body for name, body in functions.items() if not in_variant(name) and not VEX.search(body)]
    targets = re.findall(r"\b(?:call|jmp)\s+[0-9a-f]+ <(.*)>$", "\n".join(baseline), re.MULTILINE)
    callees = {re.sub(r"\+0x[0-9a-f]+$", "", target) for target in targets}
    unsafe = sorted(wide_shared & callees)
    assert not unsafe, f"baseline code calls AVX code: {unsafe[:5]}"
