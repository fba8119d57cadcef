"""The CUDA static report's loop finding (tools/cuda_static/static_report.py), on hand-written SASS:
the compiler may place part of a loop's body after code that is not in the loop, and a loop must
still be counted whole."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "cuda_static"))
import static_report  # noqa: E402


def _sass(lines: list[str]) -> list[tuple[int, str, str]]:
    text = "code for sm_90\n    Function : kernel\n" + "\n".join(
        f"        /*{16 * i:04x}*/                   {line} ;" for i, line in enumerate(lines)
    )
    return static_report.parse_sass(text)[("kernel", "sm_90")]


# A loop (header 0x10, closed at 0x50) whose conditional part sits out of line at 0x80-0xa0, after
# the kernel's exit and an unreachable trap: an address range 0x10-0x50 would miss it.
OUT_OF_LINE = [
    "MOV R0, RZ",  # 0x00
    "MOV R1, RZ",  # 0x10 header
    "@P0 BRA 0x80",  # 0x20
    "FADD R1, R1, R1",  # 0x30 joins here
    "ISETP.NE.AND P1, PT, R0, RZ, PT",  # 0x40
    "@P1 BRA 0x10",  # 0x50 closes the loop
    "EXIT",  # 0x60
    "BRA 0x70",  # 0x70 the trap after the exit (not reachable)
    "FMUL R2, R2, R2",  # 0x80
    "FFMA R2, R2, R2, R2",  # 0x90
    "BRA 0x30",  # 0xa0 back into the loop
]


def test_a_loop_counts_the_part_placed_out_of_line():
    sass = _sass(OUT_OF_LINE)
    loops = static_report.loops_of(sass)
    assert list(loops) == [(0x10, 0x50)], "one loop, headed at 0x10; the unreachable trap is none"
    body = static_report.own_bodies(sass, loops)[(0x10, 0x50)]
    assert [addr for addr, _, _ in body] == [0x10, 0x20, 0x30, 0x40, 0x50, 0x80, 0x90, 0xA0]


# An outer loop over states (0x10-0x90) around a walk along L (0x20-0x50) that loads from global
# memory, then a checked last round in the outer loop's own body that loads too.
NESTED = [
    "MOV R0, RZ",  # 0x00
    "MOV R1, RZ",  # 0x10 outer header
    "LDG.E R2, desc[UR4][R4.64]",  # 0x20 inner header
    "FFMA R3, R2, R2, R3",  # 0x30
    "ISETP.NE.AND P0, PT, R1, RZ, PT",  # 0x40
    "@P0 BRA 0x20",  # 0x50 closes the walk
    "LDG.E R5, desc[UR4][R6.64]",  # 0x60 the checked last round
    "FFMA R3, R5, R5, R3",  # 0x70
    "FADD R3, R3, R3",  # 0x80
    "@P1 BRA 0x10",  # 0x90 closes the loop over states
    "EXIT",  # 0xa0
]


def test_scan_hot_loop_is_the_innermost_loop_reading_global_memory():
    sass = _sass(NESTED)
    loops = static_report.loops_of(sass)
    assert set(loops) == {(0x10, 0x90), (0x20, 0x50)}
    bodies = static_report.own_bodies(sass, loops)
    # The outer loop's own body (5 instructions) is larger than the walk's (4), but it is not innermost.
    assert len(bodies[(0x10, 0x90)]) == 5 and len(bodies[(0x20, 0x50)]) == 4
    assert static_report.innermost_reading_global(loops, bodies) == [(0x20, 0x50)]
