"""Static performance report of the compiled CUDA kernels (no GPU needed).

    python packages/a2mamba-ops/tools/cuda_static/static_report.py --library LIBRARY [--out-dir DIR]
           [--name NAME] [--baseline JSON] [--check]

LIBRARY is the built extension (`a2mamba_ops/_C*.so`). cuobjdump (pip package
`nvidia-cuda-cuobjdump`) lists, for every kernel and architecture compiled in,
registers, stack frame, local memory and static shared memory, and its SASS. From
those this writes DIR/NAME.json and DIR/NAME.md with, per kernel:

- registers, stack bytes, local bytes, and the number of local-memory instructions
  (LDL/STL: spills, or arrays the compiler could not keep in registers);
- shared memory (static + dynamic) at every configuration A2Mamba launches (from
  a2mamba-models' variants at 224 and 384 pixels) and the largest of them;
- theoretical occupancy on sm_90 (resident warps / 64 per SM) at that largest
  shared-memory configuration;
- instructions per element in the hot loop, defined in METRIC_DEFINITION below.

--check exits 1 when a float32/float16/bfloat16 kernel has a stack frame, local
memory or local-memory instructions (float64 kernels are exempt: see the .md).
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cuda_emulation"))
import a2mamba_configs  # noqa: E402
import launch_plan  # noqa: E402

METRIC_DEFINITION = """\
**Instructions per element (hot loop).** From the SASS of each kernel: the natural loops of its
control flow (fall-through and branches). A branch to an instruction that dominates it (every path
from the entry passes there first) closes a loop headed by its target, whose body is every
instruction from which the branch is reached without passing the header: the compiler may place
parts of a loop far from the rest, so a loop is not an address range. A
loop's *own body* is its instructions minus those of the loops nested in it (each instruction
counted once, taken or not, `NOP` padding excluded). The *element* is one term of the op's sum, per thread:

- `na_*` kernels (logits, aggregate, scatter): one multiply-add `x * y` of a neighbour's channel,
  counted from the hot loop's FMA instructions (`FFMA`/`DFMA` = 1 element, `HFMA2`/`FFMA2` = 2,
  `HMMA` = its m*n*k / 32 per thread). The hot loop is the loop whose own body holds the most
  FMA elements.
- `scan_*` kernels: one time step of one state, i.e. one `h_t = a_t h_(t-1) + x_t` update (forward)
  or one adjoint step with its gradient terms (backward). The hot loop is the largest (by own body)
  of the innermost loops that read global memory: the walk along L, one round per iteration (the
  loops over states and segments around it are not innermost; the backward's dB reduction, nested
  in its walk, reads shared memory only). The steps one thread handles per iteration of it are a
  design constant of the kernel (column `elements/iter`, from `SCAN_STEPS_PER_ITERATION`).

Instructions per element = own-body instructions / elements per iteration. It counts issued
thread-instructions, so it equals warp-instructions per 32 elements; it ignores latency, memory
traffic and the (data-dependent) trip counts of loops outside the hot one. A lower number means
less issue work per element; halving it does not by itself halve the run time.

**Occupancy** (sm_90: 65,536 registers, 2,048 threads, 32 blocks and 228 KiB of shared memory per
SM, 1 KiB reserved per block, registers allocated per warp in units of 256) is the theoretical
fraction of the 64 warp slots of an SM that resident blocks fill, at the largest shared memory any
A2Mamba configuration needs.
"""

# Steps of one (row, state) each thread advances per hot-loop iteration: kScanItems of
# csrc/cuda/scan_common.cuh (the baseline report, before the rewrite, had 4: kScanRounds).
SCAN_STEPS_PER_ITERATION = {"scan_fwd_kernel": 8, "scan_fwd_summary_kernel": 8, "scan_bwd_kernel": 8}
FMA_ELEMENTS = {"FFMA": 1, "DFMA": 1, "HFMA2": 2, "FFMA2": 2}
HMMA_ELEMENTS = {"16816": 16 * 8 * 16 // 32, "1688": 16 * 8 * 8 // 32}
LOCAL_OPCODES = ("LDL", "STL")
SM90 = dict(regs=65536, threads=2048, blocks=32, smem=228 * 1024, reserved=1024, warps=64, alloc=256)
DTYPES = {"float": "float32", "double": "float64", "c10::Half": "float16", "c10::BFloat16": "bfloat16"}


@dataclass
class Kernel:
    name: str  # e.g. na_logits_kernel<float, 4>
    base: str  # na_logits_kernel
    dtype: str
    arch: str
    regs: int = 0
    stack: int = 0
    local: int = 0
    shared_static: int = 0
    sass: list[tuple[int, str, str]] = field(default_factory=list)


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    purelib = sysconfig.get_paths()["purelib"]
    for candidate in sorted(glob.glob(f"{purelib}/nvidia/*/bin/{name}")) + sorted(
        glob.glob(f"{purelib}/nvidia/*/*/bin/{name}")
    ):
        return candidate
    sys.exit(f"{name} not found: pip install nvidia-cuda-{name} (or put the CUDA toolkit's bin on PATH)")


def demangle(names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    done = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return dict(zip(names, done.stdout.splitlines(), strict=True))


def short_name(demangled: str) -> tuple[str, str, str]:
    """`void a2mamba::cuda_detail::na_logits_kernel<float, 4>(...)` -> name, base name, dtype."""
    head = demangled.split("(", 1)[0].removeprefix("void ").replace("a2mamba::cuda_detail::", "")
    base = head.split("<", 1)[0]
    args = head[len(base) + 1 : -1].split(", ") if "<" in head else []
    dtype = DTYPES.get(args[0], args[0]) if args else "?"
    pretty = head
    for cpp, short in (("c10::Half", "half"), ("c10::BFloat16", "bfloat16")):
        pretty = pretty.replace(cpp, short)
    return pretty, base, dtype


def run(tool: str, *args: str) -> str:
    done = subprocess.run([tool, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{Path(tool).name} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def parse_resources(text: str) -> dict[tuple[str, str], dict[str, int]]:
    out = {}
    arch = "?"
    function = None
    for line in text.splitlines():
        if m := re.match(r"\s*arch = (sm_\d+a?)", line):
            arch = m.group(1)
        elif m := re.match(r"\s*Function (\S+):", line):
            function = m.group(1)
        elif function and "REG:" in line:
            values = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line))
            out[(function, arch)] = {k: int(v) for k, v in values.items()}
            function = None
    return out


def parse_sass(text: str) -> dict[tuple[str, str], list[tuple[int, str, str]]]:
    out: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    arch = "?"
    current = None
    for line in text.splitlines():
        if m := re.match(r"\s*code for (sm_\d+a?)", line):
            arch = m.group(1)
        elif m := re.match(r"\s*Function : (\S+)", line):
            # A kernel launched from several translation units is in each of their cubins: keep one.
            key = (m.group(1), arch)
            current = out.setdefault(key, []) if key not in out else []
        elif current is not None and (m := re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)):
            body = m.group(2).strip()
            opcode = body.split()[1] if body.startswith("@") else body.split()[0]
            current.append((int(m.group(1), 16), opcode, body))
    return out


def _branch_target(opcode: str, body: str) -> int | None:
    if not opcode.startswith("BRA"):
        return None
    m = re.search(r"`?\(?\.?L?_?x?_?(0x[0-9a-f]+)", body.split(opcode, 1)[1])
    return int(m.group(1), 16) if m else None


def _successors(sass: list[tuple[int, str, str]]) -> list[list[int]]:
    """Control-flow successors of each instruction (by index): fall-through and branch target."""
    index = {addr: i for i, (addr, _, _) in enumerate(sass)}
    succs: list[list[int]] = [[] for _ in sass]
    for i, (_, opcode, body) in enumerate(sass):
        guarded = body.startswith("@")
        target = _branch_target(opcode, body)
        if target is not None and target in index:
            succs[i].append(index[target])
        ends = (target is not None or opcode.startswith(("EXIT", "RET", "BRX", "JMX"))) and not guarded
        if not ends and i + 1 < len(sass):
            succs[i].append(i + 1)
    return succs


def _dominators(succs: list[list[int]]) -> list[int]:
    """Immediate dominator of each instruction reachable from the entry (-1 elsewhere), by the
    iterative algorithm of Cooper, Harvey and Kennedy over a reverse post-order."""
    order, seen, stack = [], {0}, [(0, iter(succs[0]))]
    while stack:  # depth-first post-order without recursion
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            order.append(node)
            stack.pop()
        elif child not in seen:
            seen.add(child)
            stack.append((child, iter(succs[child])))
    order.reverse()
    rank = {node: k for k, node in enumerate(order)}
    preds: dict[int, list[int]] = {node: [] for node in order}
    for node in order:
        for child in succs[node]:
            preds[child].append(node)
    idom = [-1] * len(succs)
    idom[0] = 0
    changed = True
    while changed:
        changed = False
        for node in order[1:]:
            new = -1
            for p in preds[node]:
                if idom[p] == -1:
                    continue
                if new == -1:
                    new = p
                    continue
                a, b = p, new
                while a != b:
                    while rank[a] > rank[b]:
                        a = idom[a]
                    while rank[b] > rank[a]:
                        b = idom[b]
                new = a
            if idom[node] != new:
                idom[node] = new
                changed = True
    return idom


def loops_of(sass: list[tuple[int, str, str]]) -> dict[tuple[int, int], set[int]]:
    """Natural loops: an edge from an instruction to one that dominates it (every path from the
    kernel's entry passes the target first) closes a loop headed by the target, whose body is every
    instruction from which the edge is reached without passing the header. Loops sharing a header
    are one loop, keyed (header address, address of its last closing branch)."""
    if not sass:
        return {}
    succs = _successors(sass)
    idom = _dominators(succs)

    def dominates(h: int, n: int) -> bool:
        while n != h and idom[n] not in (-1, n):
            n = idom[n]
        return n == h

    preds: list[list[int]] = [[] for _ in sass]
    for i, children in enumerate(succs):
        for child in children:
            preds[child].append(i)
    by_header: dict[int, tuple[int, set[int]]] = {}
    for i, children in enumerate(succs):
        for header in children:
            if idom[i] == -1 or not dominates(header, i):
                continue
            members = {header, i}
            stack = [i] if i != header else []
            while stack:
                for p in preds[stack.pop()]:
                    if p not in members:
                        members.add(p)
                        stack.append(p)
            last, known = by_header.get(header, (i, set()))
            by_header[header] = (max(last, i), known | members)
    return {(sass[h][0], sass[last][0]): members for h, (last, members) in by_header.items()}


def own_bodies(sass, loops: dict[tuple[int, int], set[int]]):
    """Instructions of each loop that belong to no loop nested inside it (NOP padding left out)."""
    bodies = {}
    for loop, members in loops.items():
        inner = set().union(*(m for o, m in loops.items() if o != loop and m < members))
        bodies[loop] = [sass[i] for i in sorted(members - inner) if sass[i][1] != "NOP"]
    return bodies


def fma_elements(body) -> int:
    total = 0
    for _, opcode, text in body:
        root = opcode.split(".")[0]
        if "-RZ, RZ" in text:  # HFMA2 -RZ, RZ, imm: the compiler's idiom for loading a constant
            continue
        if root in FMA_ELEMENTS:
            total += FMA_ELEMENTS[root]
        elif root == "HMMA":
            shape = opcode.split(".")[1] if "." in opcode else ""
            total += HMMA_ELEMENTS.get(shape, 0)
    return total


def classify(body) -> dict[str, int]:
    classes = {"fma": 0, "shared_load": 0, "global_load": 0, "store": 0, "shuffle": 0, "special": 0, "barrier": 0}
    for _, opcode, text in body:
        root = opcode.split(".")[0]
        if (root in FMA_ELEMENTS or root == "HMMA") and "-RZ, RZ" not in text:
            classes["fma"] += 1
        elif root in ("LDS", "LDSM"):
            classes["shared_load"] += 1
        elif root in ("LDG", "LD"):
            classes["global_load"] += 1
        elif root in ("STG", "STS", "ST", "RED", "ATOM", "ATOMS"):
            classes["store"] += 1
        elif root == "SHFL":
            classes["shuffle"] += 1
        elif root == "MUFU":
            classes["special"] += 1
        elif root in ("BAR", "SYNCS"):
            classes["barrier"] += 1
    return classes


def innermost_reading_global(loops: dict[tuple[int, int], set[int]], bodies) -> list[tuple[int, int]]:
    """The loops whose own body loads from global memory and that hold no such loop inside them."""
    reading = [lp for lp in loops if any(op.startswith(("LDG", "LD.")) for _, op, _ in bodies[lp])]
    return [lp for lp in reading if not any(o != lp and loops[o] < loops[lp] for o in reading)] or list(loops)


def hot_loop(kernel: Kernel) -> dict | None:
    loops = loops_of(kernel.sass)
    if not loops:
        return None
    bodies = own_bodies(kernel.sass, loops)
    if kernel.base.startswith("scan_"):
        loop = max(innermost_reading_global(loops, bodies), key=lambda lp: len(bodies[lp]))
        elements = SCAN_STEPS_PER_ITERATION.get(kernel.base, 0)
    else:
        loop = max(loops, key=lambda lp: (fma_elements(bodies[lp]), -len(bodies[lp])))
        elements = fma_elements(bodies[loop])
    body = bodies[loop]
    return {
        "start": loop[0],
        "end": loop[1],
        "instructions": len(body),
        "elements_per_iteration": elements,
        "instructions_per_element": round(len(body) / elements, 2) if elements else None,
        "classes": classify(body),
    }


def occupancy_sm90(regs: int, threads: int, smem_bytes: int) -> dict:
    warps_per_block = -(-threads // 32)
    regs_per_warp = -(-max(regs, 1) * 32 // SM90["alloc"]) * SM90["alloc"]
    by_regs = (SM90["regs"] // regs_per_warp) // warps_per_block
    by_threads = SM90["threads"] // threads
    by_smem = SM90["smem"] // (smem_bytes + SM90["reserved"]) if smem_bytes + SM90["reserved"] > 0 else SM90["blocks"]
    blocks = min(by_regs, by_threads, by_smem, SM90["blocks"])
    limiter = min(
        (("registers", by_regs), ("threads", by_threads), ("shared memory", by_smem), ("blocks", SM90["blocks"])),
        key=lambda x: x[1],
    )[0]
    return {"blocks_per_sm": blocks, "occupancy": round(blocks * warps_per_block / SM90["warps"], 3), "limit": limiter}


def load_kernels(libraries: list[Path]) -> list[Kernel]:
    cuobjdump = find_tool("cuobjdump")
    resources, sass = {}, {}
    for library in libraries:
        resources.update(parse_resources(run(cuobjdump, "-res-usage", str(library))))
        for key, code in parse_sass(run(cuobjdump, "-sass", str(library))).items():
            sass.setdefault(key, code)
    mangled = sorted({f for f, _ in resources} | {f for f, _ in sass})
    names = demangle(mangled)
    kernels = []
    for function, arch in sorted(set(resources) | set(sass)):
        demangled = names.get(function, function)
        if "a2mamba" not in demangled:
            continue
        pretty, base, dtype = short_name(demangled)
        res = resources.get((function, arch), {})
        kernels.append(
            Kernel(
                pretty,
                base,
                dtype,
                arch,
                regs=res.get("REG", 0),
                stack=res.get("STACK", 0),
                local=res.get("LOCAL", 0),
                shared_static=res.get("SHARED", 0),
                sass=sass.get((function, arch), []),
            )
        )
    return kernels


def launches_of(kernel: Kernel) -> list[dict]:
    """Dynamic shared memory and block size at every configuration A2Mamba launches this kernel with."""
    plans = []
    for config in launch_plan.a2mamba_launches(kernel.base, kernel.dtype, kernel.name):
        plans.append(config)
    return plans


def analyse(kernels: list[Kernel]) -> list[dict]:
    rows = []
    for k in kernels:
        local_ops = sum(1 for _, opcode, _ in k.sass if opcode.split(".")[0] in LOCAL_OPCODES)
        launches = launches_of(k)
        worst = max(launches, key=lambda p: p["dynamic_smem"]) if launches else None
        row = {
            "kernel": k.name,
            "base": k.base,
            "dtype": k.dtype,
            "arch": k.arch,
            "registers": k.regs,
            "stack_bytes": k.stack,
            "local_bytes": k.local,
            "local_memory_instructions": local_ops,
            "static_smem_bytes": k.shared_static,
            "sass_instructions": sum(1 for ins in k.sass if ins[1] != "NOP"),
            "hot_loop": hot_loop(k),
            "a2mamba_launches": len(launches),
        }
        if worst is not None:
            smem = k.shared_static + worst["dynamic_smem"]
            row["max_smem_bytes"] = smem
            row["max_smem_config"] = worst["config"]
            row["threads_per_block"] = worst["threads"]
            if k.arch.startswith("sm_90"):
                row["occupancy_sm90"] = occupancy_sm90(k.regs, worst["threads"], smem)
        rows.append(row)
    return rows


def violations(rows: list[dict]) -> list[str]:
    bad = []
    for r in rows:
        if r["dtype"] == "float64":
            continue
        if r["stack_bytes"] or r["local_bytes"] or r["local_memory_instructions"]:
            bad.append(
                f"{r['kernel']} ({r['arch']}): stack {r['stack_bytes']} B, local {r['local_bytes']} B, "
                f"{r['local_memory_instructions']} LDL/STL"
            )
    return bad


def hot_value(row: dict | None):
    if not row or not row.get("hot_loop"):
        return None
    return row["hot_loop"]["instructions_per_element"]


def markdown(rows: list[dict], baseline: dict | None, library: str) -> str:
    base_rows = {(r["kernel"], r["arch"]): r for r in (baseline or {}).get("kernels", [])}
    base_by_family = {}
    for r in (baseline or {}).get("kernels", []):
        base_by_family.setdefault((r["base"], r["dtype"], r["arch"]), []).append(r)
    lines = [
        "# CUDA kernels: static report",
        "",
        "Generated by `nox -s cuda_report` (tools/cuda_static/static_report.py) from the compiled "
        f"library `{library}` with cuobjdump. **Nothing here ran on a GPU**: these are properties of the "
        "compiled code, not measurements.",
        "",
        METRIC_DEFINITION,
        "Float64 kernels are exempt from the no-stack/no-spill rule: they exist for checking against the "
        "reference, not for speed, and their doubled register needs are not worth kernel-specific tuning.",
        "",
    ]
    for arch in sorted({r["arch"] for r in rows}):
        lines += [f"## {arch}", ""]
        header = (
            "| kernel | regs | stack B | local B | LDL/STL | smem B (max at A2Mamba configs) | occupancy sm_90 "
            "| hot loop instr | elements/iter | instr/element |"
        )
        if baseline:
            header += " baseline instr/element |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for r in (r for r in rows if r["arch"] == arch):
            hot = r["hot_loop"] or {}
            occ = r.get("occupancy_sm90")
            occ_text = f"{occ['occupancy']:.0%} ({occ['limit']})" if occ else "-"
            smem_text = f"{r['max_smem_bytes']:,}" if "max_smem_bytes" in r else f"{r['static_smem_bytes']:,}"
            cells = [
                f"`{r['kernel']}`",
                r["registers"],
                r["stack_bytes"],
                r["local_bytes"],
                r["local_memory_instructions"],
                smem_text,
                occ_text,
                hot.get("instructions", "-"),
                hot.get("elements_per_iteration", "-"),
                hot.get("instructions_per_element", "-"),
            ]
            if baseline:
                old = base_rows.get((r["kernel"], r["arch"]))
                if old is None:  # a renamed or re-templated kernel: compare with its family's best
                    family = base_by_family.get((r["base"], r["dtype"], r["arch"]), [])
                    values = [hot_value(f) for f in family if hot_value(f)]
                    cells.append(f"{min(values)} (family)" if values else "-")
                else:
                    cells.append(hot_value(old) or "-")
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    bad = violations(rows)
    lines += ["## Stack frames and spills (float32/float16/bfloat16)", ""]
    lines += [f"- {b}" for b in bad] if bad else ["None."]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, nargs="+", required=True, help="the built _C*.so (or cubins / fatbins)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="cuda-static")
    parser.add_argument("--baseline", type=Path, default=None, help="an earlier report to compare against")
    parser.add_argument("--check", action="store_true", help="exit 1 on a stack frame or spill outside float64")
    args = parser.parse_args(argv)
    kernels = load_kernels(args.library)
    library_names = ", ".join(p.name for p in args.library)
    if not kernels:
        print(f"no a2mamba kernels in {library_names}: was it built with CUDA?", file=sys.stderr)
        return 1
    rows = analyse(kernels)
    baseline = json.loads(args.baseline.read_text()) if args.baseline and args.baseline.exists() else None
    report = {
        "archs": sorted({r["arch"] for r in rows}),
        "metric": "instructions per element in the hot loop; see the .md",
        "a2mamba_na_configs": [c.label for c in a2mamba_configs.na_uses()],
        "kernels": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{args.name}.md").write_text(markdown(rows, baseline, library_names))
    print(f"wrote {args.out_dir / args.name}.json and .md: {len(rows)} kernels x archs")
    bad = violations(rows)
    for b in bad:
        print(f"stack frame or local memory: {b}", file=sys.stderr)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
