// Per-trajectory 40 x 40 kernels in plain C++, for benchmarks/small_linalg.py: what a fused
// per-trajectory EnKF-N analysis could cost at best on this CPU. Not part of the package.
//
// sym_eig: Householder tridiagonalisation then the implicit QL iteration with Wilkinson-type
// shifts (the classic EISPACK tred2 / tql2 algorithms), the matrix read as column-major (it is
// symmetric) so that the inner loops run over contiguous memory; eigenvectors in the rows of W.
// cholesky_inverse: L L^T = G and L^{-1}, plain loops.
// gemm_chain: `reps` 40 x 40 products per trajectory, row-major, 1 or 5 rows of the result
// accumulated at a time.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace {

template <typename R>
void tridiagonalise(int n, R* V, R* d, R* e) {
  // V(a, b) is V[b * n + a]; on exit d, e: the diagonal and sub-diagonal (e[0] = 0), V(:, i)
  // the orthogonal transformation's columns, i.e. its rows in memory.
  auto at = [n, V](int a, int b) -> R& { return V[b * n + a]; };
  for (int j = 0; j < n; j++) d[j] = at(n - 1, j);
  for (int i = n - 1; i > 0; i--) {
    R scale = 0, h = 0;
    for (int k = 0; k < i; k++) scale += std::fabs(d[k]);
    if (scale == 0) {
      e[i] = d[i - 1];
      for (int j = 0; j < i; j++) { d[j] = at(i - 1, j); at(i, j) = 0; at(j, i) = 0; }
    } else {
      for (int k = 0; k < i; k++) { d[k] /= scale; h += d[k] * d[k]; }
      R f = d[i - 1];
      R g = f > 0 ? -std::sqrt(h) : std::sqrt(h);
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (int j = 0; j < i; j++) e[j] = 0;
      for (int j = 0; j < i; j++) {
        f = d[j];
        at(j, i) = f;
        g = e[j] + at(j, j) * f;
        const R* col = &at(0, j);
#pragma omp simd reduction(+ : g)
        for (int k = j + 1; k < i; k++) {
          g += col[k] * d[k];
          e[k] += col[k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (int j = 0; j < i; j++) { e[j] /= h; f += e[j] * d[j]; }
      const R hh = f / (h + h);
      for (int j = 0; j < i; j++) e[j] -= hh * d[j];
      for (int j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        R* col = &at(0, j);
#pragma omp simd
        for (int k = j; k < i; k++) col[k] -= f * e[k] + g * d[k];
        d[j] = at(i - 1, j);
        at(i, j) = 0;
      }
    }
    d[i] = h;
  }
  for (int i = 0; i < n - 1; i++) {
    at(n - 1, i) = at(i, i);
    at(i, i) = 1;
    const R h = d[i + 1];
    if (h != 0) {
      const R* u = &at(0, i + 1);
      for (int k = 0; k <= i; k++) d[k] = u[k] / h;
      for (int j = 0; j <= i; j++) {
        R* col = &at(0, j);
        R g = 0;
#pragma omp simd reduction(+ : g)
        for (int k = 0; k <= i; k++) g += u[k] * col[k];
#pragma omp simd
        for (int k = 0; k <= i; k++) col[k] -= g * d[k];
      }
    }
    for (int k = 0; k <= i; k++) at(k, i + 1) = 0;
  }
  for (int j = 0; j < n; j++) { d[j] = at(n - 1, j); at(n - 1, j) = 0; }
  at(n - 1, n - 1) = 1;
  e[0] = 0;
}

template <typename R>
bool implicit_ql(int n, R* W, R* d, R* e, bool vectors) {
  // Eigenvalues d of the tridiagonal (d, e); with `vectors`, the rotations applied to the rows
  // of W. Returns false if an eigenvalue needs more than 60 iterations.
  const R eps = std::numeric_limits<R>::epsilon();
  for (int i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  R shift = 0, tst1 = 0;
  for (int l = 0; l < n; l++) {
    tst1 = std::fmax(tst1, std::fabs(d[l]) + std::fabs(e[l]));
    int m = l;
    while (m < n - 1 && std::fabs(e[m]) > eps * tst1) m++;
    for (int iter = 0; m > l; iter++) {
      if (iter == 60) return false;
      R g = d[l];
      R p = (d[l + 1] - g) / (2 * e[l]);
      R r = std::sqrt(p * p + 1);
      if (p < 0) r = -r;
      d[l] = e[l] / (p + r);
      d[l + 1] = e[l] * (p + r);
      const R dl1 = d[l + 1];
      R h = g - d[l];
      for (int i = l + 2; i < n; i++) d[i] -= h;
      shift += h;
      p = d[m];
      R c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
      const R el1 = e[l + 1];
      for (int i = m - 1; i >= l; i--) {
        c3 = c2; c2 = c; s2 = s;
        g = c * e[i];
        h = c * p;
        r = std::sqrt(p * p + e[i] * e[i]);
        e[i + 1] = s * r;
        s = e[i] / r;
        c = p / r;
        p = c * d[i] - s * g;
        d[i + 1] = h + s * (c * g + s * d[i]);
        if (vectors) {
          R* __restrict wi = W + i * n;
          R* __restrict wj = W + (i + 1) * n;
#pragma omp simd
          for (int k = 0; k < n; k++) {
            const R t = wj[k];
            wj[k] = s * wi[k] + c * t;
            wi[k] = c * wi[k] - s * t;
          }
        }
      }
      p = -s * s2 * c3 * el1 * e[l] / dl1;
      e[l] = s * p;
      d[l] = c * p;
      if (!(std::fabs(e[l]) > eps * tst1)) break;
    }
    d[l] += shift;
    e[l] = 0;
  }
  return true;
}

template <typename R>
bool cholesky_inverse(int n, R* L, R* Linv) {
  // L L^T = L (lower triangle, in place, row-major), then Linv = L^{-1} (lower); false if
  // the matrix is not numerically positive definite
  for (int j = 0; j < n; j++) {
    R* lj = L + j * n;
    R s = lj[j];
    for (int k = 0; k < j; k++) s -= lj[k] * lj[k];
    if (!(s > 0)) return false;
    const R d = std::sqrt(s);
    lj[j] = d;
    for (int i = j + 1; i < n; i++) {
      R* li = L + i * n;
      R t = li[j];
#pragma omp simd reduction(+ : t)
      for (int k = 0; k < j; k++) t -= li[k] * lj[k];
      li[j] = t / d;
    }
  }
  std::memset(Linv, 0, sizeof(R) * n * n);
  for (int i = 0; i < n; i++) {  // row i of L^{-1}: forward substitution, rows accumulated
    R* xi = Linv + i * n;
    xi[i] = 1 / L[i * n + i];
    for (int k = i - 1; k >= 0; k--) {
      R t = 0;
      for (int m = k + 1; m <= i; m++) t += L[m * n + k] * xi[m];
      xi[k] = -t / L[k * n + k];
    }
  }
  return true;
}

// mode 0: tridiagonalisation only; 1: eigenvalues; 2: eigenvalues and eigenvectors
template <typename R>
void sym_eig(int64_t B, int n, const R* G, R* lam, R* W, int mode) {
  R e[256];
  for (int64_t b = 0; b < B; b++) {
    R* w = W + b * n * n;
    R* d = lam + b * n;
    std::memcpy(w, G + b * n * n, sizeof(R) * n * n);
    tridiagonalise(n, w, d, e);
    if (mode > 0 && !implicit_ql(n, w, d, e, mode == 2))
      for (int i = 0; i < n; i++) d[i] = std::numeric_limits<R>::quiet_NaN();
  }
}

template <int N, int RB>
void gemm(const float* __restrict A, const float* __restrict B, float* __restrict C) {
  // RB rows of C at a time, accumulated in registers: each row of B is loaded once per RB rows
  static_assert(N % RB == 0, "RB must divide N");
  for (int i = 0; i < N; i += RB) {
    float acc[RB][N] = {};
    for (int k = 0; k < N; k++) {
      const float* b = B + k * N;
      for (int r = 0; r < RB; r++) {
        const float a = A[(i + r) * N + k];
#pragma omp simd
        for (int j = 0; j < N; j++) acc[r][j] += a * b[j];
      }
    }
    std::memcpy(C + i * N, acc, sizeof(acc));
  }
}

}  // namespace

extern "C" {
int sym_eig_f32(int64_t B, int n, const float* G, float* lam, float* W, int mode) {
  if (n > 256) return 1;
  sym_eig<float>(B, n, G, lam, W, mode);
  return 0;
}
int sym_eig_f64(int64_t B, int n, const double* G, double* lam, double* W, int mode) {
  if (n > 256) return 1;
  sym_eig<double>(B, n, G, lam, W, mode);
  return 0;
}
int cholesky_inverse_f32(int64_t B, int n, const float* G, float* L, float* Linv) {
  int bad = 0;
  for (int64_t b = 0; b < B; b++) {
    std::memcpy(L + b * n * n, G + b * n * n, sizeof(float) * n * n);
    bad += !cholesky_inverse<float>(n, L + b * n * n, Linv + b * n * n);
  }
  return bad;
}
int gemm_chain_f32(int64_t B, int reps, int rows, const float* A, float* X, float* Y) {
  if (rows != 1 && rows != 5) return 1;
  for (int64_t b = 0; b < B; b++) {
    const float* a = A + b * 1600;
    float* x = X + b * 1600;
    float* y = Y + b * 1600;
    for (int r = 0; r < reps; r++) {
      if (rows == 5) gemm<40, 5>(a, x, y); else gemm<40, 1>(a, x, y);
      float* t = x; x = y; y = t;
    }
  }
  return 0;
}
}
