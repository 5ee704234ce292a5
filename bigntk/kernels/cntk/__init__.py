"""Convolutional NTK (CNTK) of encoder–decoder (Deep-Image-Prior style) networks, dense and compact.

Images are matrices: the kernel K is indexed by output pixels p = i·W + j (row-major), K has shape
(H·W, H·W) and depends only on the architecture, the prior and (H, W) — never on pixel values.

Architectures (stax style)
--------------------------
``serial(Conv(3), ReLU(), Down(), ...)`` or ``dip(levels, filter=3, convs_per_level=1,
upsample="nearest", activation="relu")`` (the paper's encoder–decoder:
[(Conv–act)×c, Down]×s, (Conv–act)×c, [Up, (Conv–act)×c]×(s−1), Up, (Conv–act)×(c−1), Conv).

Conventions (those of the paper's code)
--------------------------------------
* Prior covariance Σ⁰(p, p′) = Σ_c Z_c[p] Z_c[p′]; ``"stationary"`` = expected Gram of i.i.d.
  U[0, 0.1] channels: 1/300 on the diagonal, 1/400 off it; ``"identity"``: Σ⁰ = I.
* Conv(q): q×q filter (odd q), circular padding, 1/q² scaling, no bias:
  Σ ← W[K], Θ ← W[K + K̇ ⊙ Θ] with W[X](p, p′) = q⁻² Σ_{δ∈[−r,r]²} X(p+δ, p′+δ) (first conv: Θ = Σ).
* ReLU / LeakyReLU(slope): normalised duals (``bigntk.kernels.ntk.relu_duals``), K = √(d d′)·φ̌(ρ),
  K̇ = φ̌′(ρ). The last conv has no activation.  Down: keep even coordinates (stride 2).
  Up: ``"nearest"``; ``"bilinear"`` (periodic half-pixel: even output 2m ← ¼x[m−1] + ¾x[m], odd
  2m+1 ← ¾x[m] + ¼x[m+1], indices mod n, equivariant under shifts by 2); ``"bilinear_aligned"``
  (align-corners, not periodic: dense only).

Compact layout (PUBLIC, used by ``bigntk.operators``)
-----------------------------------------------------
With circular padding and a stationary prior the output covariance is invariant under joint shifts by
the period P = 2^(number of Up layers). ``compact_kernel`` stores

    C[a_y, a_x, v_y, v_x]   shape (P, P, H, W)
    K[(i, j), (k, l)] = C[i mod P, j mod P, (k − i) mod H, (l − j) mod W].

Window form (PUBLIC, the default where it holds)
------------------------------------------------
With nearest upsampling and a δ-structured stationary prior ("stationary", "identity"), every
output row equals one constant ``c_far`` outside the box |v_y| ≤ P − 1, |v_x| ≤ P − 1 (each Up maps a
near extent e to 2e + 1 and convs never change offsets, so e = 2^s − 1; the diagonal stays constant
so far values stay one constant).  Inside the box the values do not depend on (H, W) once
H, W ≥ 2P (the bottleneck is then ≥ 2 pixels, so offset 0 and offset ≠ 0 are distinct there).
The window form stores

    C_window   float array, shape (P, P, 2P − 1, 2P − 1), the DEVIATION from c_far:
               C_window[a_y, a_x, d_y + P − 1, d_x + P − 1] = K[(i, j), (i + d_y, j + d_x)] − c_far
               for i ≡ a_y, j ≡ a_x (mod P), d ∈ [−(P−1), P−1]²; K − c_far = 0 outside the box.
    c_far      Python float.
    K x = (window correlation of x with C_window, offsets taken mod (H, W)) + c_far · Σ x
    (add the c_far term LAST in float32: the deviations are small next to it).

Null space and constant mode (facts for solvers)
------------------------------------------------
* K is exactly singular when the network ends with Up → Conv and one conv per level: every 2×2
  block-sum of every shift (δ ∈ window) of f vanishes for f(i, j) = (−1)^(i+j)(a_i + b_j), so
  null(K) ⊇ that space, of dimension H + W − 1 (``null_space_dim``, ``null_space_basis``); add a
  ridge or restrict the solve to observed pixels (a subset of rows is usually nonsingular).
* K carries a large constant component c_far·11ᵀ (rank one, eigenvalue ≈ c_far·H·W); ``row_sums``
  gives K·1 per phase (P × P) so solvers can deflate or precondition the constant mode.
"""
from .layers import (
    Conv,
    Down,
    LeakyReLU,
    ReLU,
    Serial,
    Up,
    dip,
    serial,
)
from .dense import dense_kernel
from ...priors.images import prior_covariance  # its home; re-exported for kernel users
from .compact import (
    CompactKernel,
    WindowKernel,
    compact_arrays,
    window_arrays,
    null_space_basis,
    null_space_dim,
    window_condition,
)
from .store import DamagedStoreError, ensure_store, kernel_key, open_kernel
from .build import compact_kernel

__all__ = [
    "Conv", "ReLU", "LeakyReLU", "Down", "Up", "Serial", "serial", "dip",
    "dense_kernel", "prior_covariance",
    "compact_kernel", "compact_arrays", "window_arrays", "CompactKernel", "WindowKernel",
    "window_condition", "null_space_dim", "null_space_basis",
    "open_kernel", "kernel_key", "ensure_store", "DamagedStoreError",
]
