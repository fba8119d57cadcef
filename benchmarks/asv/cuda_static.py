"""asv tracks of the CUDA kernels' static report (benchmarks/results/cuda-static.json).

The numbers come from the compiled code (`nox -s cuda_report`, cuobjdump; no GPU), so asv's
history of them shows a regression (more registers, a spill, more instructions per element in a
hot loop, lower occupancy) at the commit that introduced it, on machines that have no GPU.
Each value is read from the JSON committed with that commit; a commit without the file has no
values. One parameter per kernel (template arguments included) and architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "results" / "cuda-static.json"


def _rows() -> dict[str, dict]:
    try:
        kernels = json.loads(REPORT.read_text())["kernels"]
    except (OSError, ValueError, KeyError):
        return {}
    return {f"{k['kernel']} @ {k['arch']}": k for k in kernels}


_ROWS = _rows()


class CudaStatic:
    params = [sorted(_ROWS)] if _ROWS else [["no report"]]
    param_names = ["kernel"]
    timeout = 60

    def setup(self, kernel):
        if kernel not in _ROWS:
            raise NotImplementedError("no CUDA static report at this commit")  # asv skips the case
        self.row = _ROWS[kernel]

    def track_registers(self, kernel):
        return self.row["registers"]

    track_registers.unit = "registers"

    def track_stack_bytes(self, kernel):
        return self.row["stack_bytes"]

    track_stack_bytes.unit = "bytes"

    def track_local_memory_instructions(self, kernel):
        return self.row["local_memory_instructions"]

    track_local_memory_instructions.unit = "instructions"

    def track_instructions_per_element(self, kernel):
        hot = self.row.get("hot_loop") or {}
        value = hot.get("instructions_per_element")
        if value is None:
            raise NotImplementedError("no hot loop found")
        return value

    track_instructions_per_element.unit = "instructions"

    def track_max_shared_memory(self, kernel):
        return self.row.get("max_smem_bytes", self.row["static_smem_bytes"])

    track_max_shared_memory.unit = "bytes"

    def track_idle_warp_slots_sm90_pct(self, kernel):
        """100 - theoretical occupancy on sm_90, so that lower is better like every asv number."""
        occupancy = self.row.get("occupancy_sm90")
        if occupancy is None:
            raise NotImplementedError("occupancy is reported for sm_90 only")
        return round(100 * (1 - occupancy["occupancy"]), 1)

    track_idle_warp_slots_sm90_pct.unit = "%"
