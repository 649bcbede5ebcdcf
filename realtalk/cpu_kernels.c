/* Fused CPU kernels for the RealTalk renderer's inference path (realtalk/cpu_kernels.py builds and loads this).
 *
 * Why: at 256 px the small renderer is memory-bound on a CPU. Eager torch runs a norm + modulation + leaky
 * ReLU as 5-6 passes over the activation (mean, x - mean, square, mean, addcmul, leaky_relu_), and writes
 * a nearest 2x upsample + channel concat only for a 1x1 conv to read it. Here the norm is two passes over
 * NHWC (channels_last) fp32 memory, and the skip merge adds the low-resolution half's upsample in place.
 *
 * Numerics: statistics accumulate in double with a per-channel shift (the sample's first pixel), so the
 * mean and the variance are exact to double rounding (no cancellation at fp32 level); the output is
 * fmaf((x - mean_hi) - mean_lo, a, b) in fp32, the mean carried as two floats and a = gamma * rstd rounded
 * once from double: torch's (x - mean) * a + b, without the error of a mean rounded to fp32 where the mean is
 * far above the spread.
 *
 * Threads: OpenMP; inside the torch process it is torch's own libgomp (same soname), so
 * torch.set_num_threads governs it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHUNKS 64

static int64_t chunks_for(int64_t hw, int64_t c) {
    /* enough chunks per sample for the threads, each at least ~64 KB of activations */
    int64_t k = (hw * c) / 16384;
    if (k < 1) k = 1;
    if (k > MAX_CHUNKS) k = MAX_CHUNKS;
    return k;
}

/* Statistics pass. x: [B, HW, C] (NHWC memory). gamma/beta: per (b, c) at gamma[b * g_bstride + c]
 * (g_bstride 0: per channel; NULL: 1 / 0); gamma_add is added to gamma (AdaIN's 1 + scale). groups: channel
 * groups sharing statistics (C: instance norm; GroupNorm's G). Writes coef [4, B, C]: the group mean as two
 * floats (hi + lo: x - hi - lo keeps the double mean's accuracy where the mean is far above the spread), a =
 * (gamma + gamma_add) * rstd (rounded once from double) and b = beta, so that y = (x - mean) * a + b. */
int rt_norm_stats_nhwc(const float *x, int64_t B, int64_t HW, int64_t C, int64_t groups,
                       const float *gamma, int64_t g_bstride, double gamma_add,
                       const float *beta, int64_t b_bstride, double eps, float *coef) {
    if (B <= 0 || HW <= 0 || C <= 0 || groups <= 0 || C % groups) return 1;
    const int64_t cg = C / groups;
    const int64_t nch = chunks_for(HW, C);
    double *part = (double *)calloc((size_t)(B * nch * C * 2), sizeof(double));
    float *shift = (float *)malloc((size_t)(B * C) * sizeof(float));
    if (!part || !shift) {
        free(part); free(shift);
        return 2;
    }
    for (int64_t b = 0; b < B; ++b) memcpy(shift + b * C, x + b * HW * C, (size_t)C * sizeof(float));

    /* per (sample, chunk, channel) shifted sums s = sum(x - K), q = sum((x - K)^2), in double */
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B * nch; ++t) {
        const int64_t b = t / nch, k = t % nch;
        const int64_t p0 = HW * k / nch, p1 = HW * (k + 1) / nch;
        double *s = part + t * C * 2, *q = s + C;
        const float *K = shift + b * C;
        for (int64_t p = p0; p < p1; ++p) {
            const float *row = x + (b * HW + p) * C;
            for (int64_t c = 0; c < C; ++c) {
                const double d = (double)row[c] - (double)K[c];
                s[c] += d;
                q[c] += d * d;
            }
        }
    }

    /* combine: per group mean and mean squared deviation, then the per-channel coefficients */
    float *mhi = coef, *mlo = coef + B * C, *a_f = coef + 2 * B * C, *b_f = coef + 3 * B * C;
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t g = 0; g < groups; ++g) {
            const double n = (double)HW, ng = n * (double)cg;
            double tot = 0.0;
            for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
                double sc = 0.0;
                for (int64_t k = 0; k < nch; ++k) sc += part[((b * nch + k) * 2) * C + c];
                tot += n * (double)shift[b * C + c] + sc;
            }
            const double mu = tot / ng;
            double m2 = 0.0;
            for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
                double sc = 0.0, qc = 0.0;
                for (int64_t k = 0; k < nch; ++k) {
                    sc += part[((b * nch + k) * 2) * C + c];
                    qc += part[((b * nch + k) * 2 + 1) * C + c];
                }
                const double dk = (double)shift[b * C + c] - mu;  /* sum (x - mu)^2 = q + 2 dk s + n dk^2 */
                m2 += qc + 2.0 * dk * sc + n * dk * dk;
            }
            double var = m2 / ng;
            if (var < 0.0) var = 0.0;
            const double rstd = 1.0 / sqrt(var + eps);
            for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
                const double ga = (gamma ? (double)gamma[b * g_bstride + c] : 1.0) + gamma_add;
                mhi[b * C + c] = (float)mu;
                mlo[b * C + c] = (float)(mu - (double)(float)mu);
                a_f[b * C + c] = (float)(ga * rstd);
                b_f[b * C + c] = beta ? beta[b * b_bstride + c] : 0.0f;
            }
        }
    }
    free(part); free(shift);
    return 0;
}

/* Apply pass: y = ((x - mean_hi) - mean_lo) * a + b (one fmaf), then leaky ReLU with `slope` when has_slope; coef as written
 * by rt_norm_stats_nhwc. y may equal x (in place). */
int rt_affine_act_nhwc(const float *x, float *y, int64_t B, int64_t HW, int64_t C, const float *coef,
                       double slope, int has_slope) {
    if (B <= 0 || HW <= 0 || C <= 0) return 1;
    const int64_t nch = chunks_for(HW, C);
    const float sl = (float)slope;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B * nch; ++t) {
        const int64_t b = t / nch, k = t % nch;
        const int64_t p0 = HW * k / nch, p1 = HW * (k + 1) / nch;
        const float *m = coef + b * C, *ml = coef + (B + b) * C, *a = coef + (2 * B + b) * C;
        const float *o = coef + (3 * B + b) * C;
        for (int64_t p = p0; p < p1; ++p) {
            const float *xi = x + (b * HW + p) * C;
            float *yi = y + (b * HW + p) * C;
            if (has_slope) {
                for (int64_t c = 0; c < C; ++c) {
                    const float v = fmaf((xi[c] - m[c]) - ml[c], a[c], o[c]);
                    yi[c] = v > 0.0f ? v : v * sl;
                }
            } else {
                for (int64_t c = 0; c < C; ++c) yi[c] = fmaf((xi[c] - m[c]) - ml[c], a[c], o[c]);
            }
        }
    }
    return 0;
}

/* y[b, Y, X, :] += low[b, Y/2, X/2, :] (NHWC, y [B, 2h, 2w, C], low [B, h, w, C]): adds a nearest 2x upsample
 * without forming it (the renderer's skip merge, 1x1 conv of [up(x), skip] = up(W1 x) + W2 skip). */
int rt_add_upsampled2x_nhwc(float *y, const float *low, int64_t B, int64_t h, int64_t w, int64_t C) {
    if (B <= 0 || h <= 0 || w <= 0 || C <= 0) return 1;
    const int64_t W = 2 * w;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * 2 * h; ++r) {
        const int64_t b = r / (2 * h), Y = r % (2 * h);
        const float *lr = low + ((b * h + Y / 2) * w) * C;
        float *yr = y + ((b * 2 * h + Y) * W) * C;
        for (int64_t X = 0; X < W; ++X) {
            const float *l = lr + (X / 2) * C;
            float *o = yr + X * C;
            for (int64_t c = 0; c < C; ++c) o[c] += l[c];
        }
    }
    return 0;
}
