"""Plain-PyTorch definitions of the ops: the ground truth every backend is tested against."""

from .na2d_ref import na2d_av_ref, na2d_qk_ref, na2d_qk_softmax_ref, neighbourhood_indices
from .scan_ref import selective_scan_state_ref

__all__ = [
    "na2d_av_ref",
    "na2d_qk_ref",
    "na2d_qk_softmax_ref",
    "neighbourhood_indices",
    "selective_scan_state_ref",
]
