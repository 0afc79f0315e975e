"""What a per-trajectory (fused) EnKF-N analysis could cost at best on this CPU: the 40 x 40
kernels it would be made of, in plain C++ (benchmarks/small_linalg.cpp, compiled here with
g++ -O3 -march=native) beside LAPACK (numpy, torch) and torch's batched product, one thread:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/small_linalg.py [batch]

The matrices are the Gram matrices G = Y Y^T of a real EnKF-N cycle (L96 N_x = 40, F = 8, full
observation, N = 40, dt = 0.05, the forecast of the 30th cycle; the QL iteration's cost depends
on the spectrum). Prints microseconds per matrix (per trajectory), best of 3 timings; the C++
eigendecomposition is checked against LAPACK's before it is timed.
"""

import ctypes
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from _enkf_cycle import last_analysis_inputs

HERE = pathlib.Path(__file__).resolve().parent


def gram_matrices(batch: int) -> np.ndarray:
    E = last_analysis_inputs(batch, torch.float64)[1]
    A = E - E.mean(-2, keepdim=True)
    return (A @ A.transpose(-1, -2)).numpy()


def best_time(f, reps: int) -> float:
    f()
    out = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        out.append((time.perf_counter() - t) / reps)
    return min(out)


def main(batch: int) -> None:
    torch.set_num_threads(1)
    tmp = pathlib.Path(tempfile.mkdtemp())
    lib_path = tmp / "small_linalg.so"
    subprocess.run(["g++", "-O3", "-march=native", "-fopenmp-simd", "-shared", "-fPIC",
                    "-o", str(lib_path), str(HERE / "small_linalg.cpp")], check=True)
    lib = ctypes.CDLL(str(lib_path))
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    G64 = gram_matrices(batch)
    n = G64.shape[-1]
    rows = []
    for dtype, fn in ((np.float64, lib.sym_eig_f64), (np.float32, lib.sym_eig_f32)):
        G = np.ascontiguousarray(G64.astype(dtype))
        lam, W = np.empty((batch, n), dtype), np.empty((batch, n, n), dtype)

        def c_eig(mode, G=G, lam=lam, W=W, fn=fn):
            fn(ctypes.c_int64(batch), ctypes.c_int(n), ptr(G), ptr(lam), ptr(W), ctypes.c_int(mode))

        c_eig(2)
        rec = np.einsum("bik,bi,bil->bkl", W.astype(np.float64), lam, W.astype(np.float64))
        err = np.abs(rec - G64).max() / np.abs(G64).max()
        ref = np.linalg.eigvalsh(G64)
        lam_err = np.abs(np.sort(lam, -1) - ref).max() / ref.max()
        assert err < (1e-12 if dtype == np.float64 else 1e-5), err
        name = np.dtype(dtype).name
        rows.append((f"C++ tridiagonalisation ({name})", best_time(lambda: c_eig(0), 5)))
        rows.append((f"C++ tridiagonalisation + QL, eigenvalues only ({name})",
                     best_time(lambda: c_eig(1), 5)))
        rows.append((f"C++ eigendecomposition ({name}; |G - W^T L W| {err:.1e}, eigenvalues "
                     f"{lam_err:.1e}, relative)", best_time(lambda: c_eig(2), 5)))
        rows.append((f"numpy.linalg.eigh, LAPACK ({name})",
                     best_time(lambda G=G: np.linalg.eigh(G), 3)))
        tG = torch.from_numpy(G)
        rows.append((f"torch.linalg.eigh, batched ({name})",
                     best_time(lambda tG=tG: torch.linalg.eigh(tG), 3)))
    A = np.ascontiguousarray((G64 / np.abs(G64).max()).astype(np.float32))
    X = np.ascontiguousarray(np.broadcast_to(np.eye(n, dtype=np.float32), A.shape))
    Y = np.empty_like(X)
    S = np.ascontiguousarray((G64 + (n - 1) * np.eye(n)).astype(np.float32))
    L, Linv = np.empty_like(S), np.empty_like(S)

    def chol():
        return lib.cholesky_inverse_f32(ctypes.c_int64(batch), ctypes.c_int(n), ptr(S), ptr(L),
                                        ptr(Linv))

    assert chol() == 0
    ref = np.linalg.inv(np.linalg.cholesky(G64 + (n - 1) * np.eye(n)))
    inv_err = np.abs(Linv - ref).max() / np.abs(ref).max()
    assert inv_err < 1e-4, inv_err
    rows.append((f"C++ Cholesky factor of G + (N-1) I and its inverse (float32; relative error "
                 f"{inv_err:.1e})", best_time(chol, 5)))
    reps = 12
    for rows_at_once in (1, 5):
        t = best_time(lambda r=rows_at_once: lib.gemm_chain_f32(
            ctypes.c_int64(batch), ctypes.c_int(reps), ctypes.c_int(r), ptr(A), ptr(X), ptr(Y)), 5)
        rows.append((f"C++ 40 x 40 product, {rows_at_once} row(s) of the result at a time "
                     "(float32)", t / reps))
    tA, tX = torch.from_numpy(A), torch.from_numpy(X)
    rows.append(("torch batched 40 x 40 product, bmm (float32)", best_time(lambda: tA @ tX, 50)))
    print(f"{torch.__version__}, batch {batch}, one thread; microseconds per 40 x 40 matrix")
    for name, sec in rows:
        print(f"  {1e6 * sec / batch:8.2f}  {name}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
