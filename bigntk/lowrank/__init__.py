"""Low-rank matrix completion: lin-RFM (alpha = 1 and SVD-free alpha = 1/2) and classic baselines."""
from .linrfm import LinRFM, lin_rfm, lin_rfm_result

__all__ = ["LinRFM", "lin_rfm", "lin_rfm_result"]
