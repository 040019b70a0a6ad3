/*
 * Our wasm SIMD kernels for the tfjs wasm backend (convolutions, group norm), working in place on the backend's own
 * heap (the module imports that memory: no copies in or out). All NHWC, float32; convolutions with dilation 1.
 *
 * conv_filter_grad (tfjs's Conv2DBackpropFilter, which tfjs-backend-wasm lacks):
 *   dw[kh][kw][ci][co] = sum over b, oh, ow of x[b][oh*sh + kh - pt][ow*sw + kw - pl][ci] * dy[b][oh][ow][co]
 * The composition from stock kernels (a Conv2D of the transposed input with the transposed dy as its "filter")
 * spends a third of its time repacking that 28x28xB filter and transposing x on every call. Here the reduction runs
 * over blocks of ROWS output rows of one image (the rows of x and dy they touch stay in L1/L2), and inside a block
 * every 4 (ci) x 8 (co) tile of dw[kh][kw] is accumulated in registers over the block's pixels.
 *
 * conv2d_fwd (Conv2D / FusedConv2D with bias and relu): 4 output pixels x 8 output channels accumulated in
 * registers over every tap and input channel for interior pixels, tap by tap at the borders (no padded copy of x).
 * It sums in the same order as XNNPACK, so its outputs are bit-identical to the stock kernel's.
 *
 * group_norm_silu / group_norm_silu_grad: silu(group_norm(x) g + b) and its gradient (x, g, b), each in two sweeps
 * over the image (channel sums, then normalise; dz and its channel sums, then dx), with a vectorised exp.
 *
 * Build (clang and lld 14+, Debian `apt-get install clang lld`; wabt's wasm2wat for the checks): `npm run
 * build:wasm`, which writes src/backend/native-kernels-wasm.ts. The module must have no data segment and must not
 * touch its stack: it shares the backend's memory, whose low addresses belong to the backend (the build checks both).
 */
#include <wasm_simd128.h>

#define ROWS 4

typedef struct {
  int b, h, w, ci, ho, wo, co, kh, kw, sh, sw, pt, pl;
} shape_t;

/* dw tile (ci0..ci0+3, co0..co0+7) of tap (kh, kw) += over output rows [oh0, oh1) of image bi */
static inline void tile4x8(const float *restrict x, const float *restrict dy, float *restrict dwt, int ldw,
                           int oh0, int oh1, int ow0, int ow1, int kh, int kw, const int *restrict p) {
  const int w = p[0], ci = p[1], co = p[2], sh = p[3], sw = p[4], pt = p[5], pl = p[6], wo = p[7];
  v128_t a00 = wasm_v128_load(dwt), a01 = wasm_v128_load(dwt + 4);
  v128_t a10 = wasm_v128_load(dwt + ldw), a11 = wasm_v128_load(dwt + ldw + 4);
  v128_t a20 = wasm_v128_load(dwt + 2 * ldw), a21 = wasm_v128_load(dwt + 2 * ldw + 4);
  v128_t a30 = wasm_v128_load(dwt + 3 * ldw), a31 = wasm_v128_load(dwt + 3 * ldw + 4);
  for (int oh = oh0; oh < oh1; oh++) {
    const int ih = oh * sh + kh - pt;
    const float *xr = x + ((long)ih * w + (long)ow0 * sw + kw - pl) * ci;
    const float *dr = dy + ((long)oh * wo + ow0) * co;
    const int xs = sw * ci;
    for (int ow = ow0; ow < ow1; ow++) {
      const v128_t d0 = wasm_v128_load(dr), d1 = wasm_v128_load(dr + 4);
      v128_t s = wasm_v128_load32_splat(xr);
      a00 = wasm_f32x4_add(a00, wasm_f32x4_mul(s, d0));
      a01 = wasm_f32x4_add(a01, wasm_f32x4_mul(s, d1));
      s = wasm_v128_load32_splat(xr + 1);
      a10 = wasm_f32x4_add(a10, wasm_f32x4_mul(s, d0));
      a11 = wasm_f32x4_add(a11, wasm_f32x4_mul(s, d1));
      s = wasm_v128_load32_splat(xr + 2);
      a20 = wasm_f32x4_add(a20, wasm_f32x4_mul(s, d0));
      a21 = wasm_f32x4_add(a21, wasm_f32x4_mul(s, d1));
      s = wasm_v128_load32_splat(xr + 3);
      a30 = wasm_f32x4_add(a30, wasm_f32x4_mul(s, d0));
      a31 = wasm_f32x4_add(a31, wasm_f32x4_mul(s, d1));
      xr += xs;
      dr += co;
    }
  }
  wasm_v128_store(dwt, a00); wasm_v128_store(dwt + 4, a01);
  wasm_v128_store(dwt + ldw, a10); wasm_v128_store(dwt + ldw + 4, a11);
  wasm_v128_store(dwt + 2 * ldw, a20); wasm_v128_store(dwt + 2 * ldw + 4, a21);
  wasm_v128_store(dwt + 3 * ldw, a30); wasm_v128_store(dwt + 3 * ldw + 4, a31);
}

/* one input channel x 4 output channels (remainders of the tiles above) */
static inline void tile1x4(const float *restrict x, const float *restrict dy, float *restrict dwt,
                           int oh0, int oh1, int ow0, int ow1, int kh, int kw, const int *restrict p) {
  const int w = p[0], ci = p[1], co = p[2], sh = p[3], sw = p[4], pt = p[5], pl = p[6], wo = p[7];
  v128_t a = wasm_v128_load(dwt);
  for (int oh = oh0; oh < oh1; oh++) {
    const int ih = oh * sh + kh - pt;
    const float *xr = x + ((long)ih * w + (long)ow0 * sw + kw - pl) * ci;
    const float *dr = dy + ((long)oh * wo + ow0) * co;
    for (int ow = ow0; ow < ow1; ow++) {
      a = wasm_f32x4_add(a, wasm_f32x4_mul(wasm_v128_load32_splat(xr), wasm_v128_load(dr)));
      xr += sw * ci;
      dr += co;
    }
  }
  wasm_v128_store(dwt, a);
}

/* one input channel x one output channel (output channels beyond a multiple of 4) */
static inline void tile1x1(const float *restrict x, const float *restrict dy, float *restrict dwt,
                           int oh0, int oh1, int ow0, int ow1, int kh, int kw, const int *restrict p) {
  const int w = p[0], ci = p[1], co = p[2], sh = p[3], sw = p[4], pt = p[5], pl = p[6], wo = p[7];
  float a = *dwt;
  for (int oh = oh0; oh < oh1; oh++) {
    const int ih = oh * sh + kh - pt;
    const float *xr = x + ((long)ih * w + (long)ow0 * sw + kw - pl) * ci;
    const float *dr = dy + ((long)oh * wo + ow0) * co;
    for (int ow = ow0; ow < ow1; ow++) {
      a += *xr * *dr;
      xr += sw * ci;
      dr += co;
    }
  }
  *dwt = a;
}

static inline int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/*
 * x: [b, h, w, ci], dy: [b, ho, wo, co], dw: [kh, kw, ci, co] (overwritten), all float32 on the shared heap.
 * Strides sh, sw >= 1; pt, pl: the forward pass's top and left zero padding (bottom/right follow from ho, wo).
 */
__attribute__((export_name("conv_filter_grad")))
void conv_filter_grad(const float *x, const float *dy, float *dw, int b, int h, int w, int ci, int ho, int wo,
                      int co, int kh, int kw, int sh, int sw, int pt, int pl) {
  const int n = kh * kw * ci * co;
  for (int i = 0; i < n; i++) dw[i] = 0.0f;
  const int p[8] = {w, ci, co, sh, sw, pt, pl, wo};
  const int ci4 = ci & ~3, co8 = co & ~7, co4 = co & ~3;
  for (int bi = 0; bi < b; bi++) {
    const float *xb = x + (long)bi * h * w * ci;
    const float *db = dy + (long)bi * ho * wo * co;
    for (int r0 = 0; r0 < ho; r0 += ROWS) {
      const int r1 = r0 + ROWS < ho ? r0 + ROWS : ho;
      for (int u = 0; u < kh; u++) {
        /* output rows whose input row oh*sh + u - pt lies inside the image */
        int oh0 = ceil_div(pt - u, sh), oh1 = ceil_div(h + pt - u, sh);
        if (oh0 < r0) oh0 = r0;
        if (oh1 > r1) oh1 = r1;
        if (oh0 >= oh1) continue;
        for (int v = 0; v < kw; v++) {
          int ow0 = ceil_div(pl - v, sw), ow1 = ceil_div(w + pl - v, sw);
          if (ow0 < 0) ow0 = 0;
          if (ow1 > wo) ow1 = wo;
          if (ow0 >= ow1) continue;
          float *dwk = dw + (long)(u * kw + v) * ci * co;
          int c = 0;
          for (; c < ci4; c += 4) {
            int o = 0;
            for (; o < co8; o += 8) tile4x8(xb + c, db + o, dwk + c * co + o, co, oh0, oh1, ow0, ow1, u, v, p);
            for (; o < co4; o += 4)
              for (int cc = c; cc < c + 4; cc++) tile1x4(xb + cc, db + o, dwk + cc * co + o, oh0, oh1, ow0, ow1, u, v, p);
            for (; o < co; o++)
              for (int cc = c; cc < c + 4; cc++) tile1x1(xb + cc, db + o, dwk + cc * co + o, oh0, oh1, ow0, ow1, u, v, p);
          }
          for (; c < ci; c++) {
            int o = 0;
            for (; o < co4; o += 4) tile1x4(xb + c, db + o, dwk + c * co + o, oh0, oh1, ow0, ow1, u, v, p);
            for (; o < co; o++) tile1x1(xb + c, db + o, dwk + c * co + o, oh0, oh1, ow0, ow1, u, v, p);
          }
        }
      }
    }
  }
}

static inline void fwd1x8(const float *restrict xr, const float *restrict wt, int co, float *restrict yr, int ci) {
  v128_t a0 = wasm_v128_load(yr), a1 = wasm_v128_load(yr + 4);
  for (int c = 0; c < ci; c++) {
    const v128_t s = wasm_v128_load32_splat(xr);
    a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(s, wasm_v128_load(wt)));
    a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(s, wasm_v128_load(wt + 4)));
    xr++;
    wt += co;
  }
  wasm_v128_store(yr, a0); wasm_v128_store(yr + 4, a1);
}

/* 4 output pixels x 8 output channels += their kh x kw taps from xr (all inside x; xrow: input row length) over every
 * input channel, accumulated in registers; kh = kw = 1 for one tap */
static inline void fwd4x8(const float *restrict xr, int xs, int xrow, const float *restrict wt, int co,
                          float *restrict yr, int ci, int kh, int kw) {
  v128_t a00 = wasm_v128_load(yr), a01 = wasm_v128_load(yr + 4);
  v128_t a10 = wasm_v128_load(yr + co), a11 = wasm_v128_load(yr + co + 4);
  v128_t a20 = wasm_v128_load(yr + 2 * co), a21 = wasm_v128_load(yr + 2 * co + 4);
  v128_t a30 = wasm_v128_load(yr + 3 * co), a31 = wasm_v128_load(yr + 3 * co + 4);
  for (int u = 0; u < kh; u++) {
    for (int v = 0; v < kw; v++) {
      const float *xp = xr + u * xrow + v * ci;
      for (int c = 0; c < ci; c++) {
        const v128_t w0 = wasm_v128_load(wt), w1 = wasm_v128_load(wt + 4);
        v128_t s = wasm_v128_load32_splat(xp);
        a00 = wasm_f32x4_add(a00, wasm_f32x4_mul(s, w0));
        a01 = wasm_f32x4_add(a01, wasm_f32x4_mul(s, w1));
        s = wasm_v128_load32_splat(xp + xs);
        a10 = wasm_f32x4_add(a10, wasm_f32x4_mul(s, w0));
        a11 = wasm_f32x4_add(a11, wasm_f32x4_mul(s, w1));
        s = wasm_v128_load32_splat(xp + 2 * xs);
        a20 = wasm_f32x4_add(a20, wasm_f32x4_mul(s, w0));
        a21 = wasm_f32x4_add(a21, wasm_f32x4_mul(s, w1));
        s = wasm_v128_load32_splat(xp + 3 * xs);
        a30 = wasm_f32x4_add(a30, wasm_f32x4_mul(s, w0));
        a31 = wasm_f32x4_add(a31, wasm_f32x4_mul(s, w1));
        xp++;
        wt += co;
      }
    }
  }
  wasm_v128_store(yr, a00); wasm_v128_store(yr + 4, a01);
  wasm_v128_store(yr + co, a10); wasm_v128_store(yr + co + 4, a11);
  wasm_v128_store(yr + 2 * co, a20); wasm_v128_store(yr + 2 * co + 4, a21);
  wasm_v128_store(yr + 3 * co, a30); wasm_v128_store(yr + 3 * co + 4, a31);
}

/* output row oh, columns [c0, c1): += every tap whose input row and column lie inside x, tap by tap */
static void fwd_row_taps(const float *xb, const float *w, float *yr, int c0, int c1, int oh, int h, int wd, int ci,
                         int co, int kh, int kw, int sh, int sw, int pt, int pl) {
  for (int u = 0; u < kh; u++) {
    const int ih = oh * sh + u - pt;
    if (ih < 0 || ih >= h) continue;
    for (int v = 0; v < kw; v++) {
      int ow0 = ceil_div(pl - v, sw), ow1 = ceil_div(wd + pl - v, sw);
      if (ow0 < c0) ow0 = c0;
      if (ow1 > c1) ow1 = c1;
      if (ow0 >= ow1) continue;
      const float *wt = w + (long)(u * kw + v) * ci * co;
      const int xs = sw * ci;
      const float *xr = xb + ((long)ih * wd + (long)ow0 * sw + v - pl) * ci;
      int ow = ow0;
      for (; ow + 4 <= ow1; ow += 4, xr += 4 * xs)
        for (int o = 0; o < co; o += 8) fwd4x8(xr, xs, 0, wt + o, co, yr + ow * co + o, ci, 1, 1); /* this tap only */
      for (; ow < ow1; ow++, xr += xs)
        for (int o = 0; o < co; o += 8) fwd1x8(xr, wt + o, co, yr + ow * co + o, ci);
    }
  }
}

/*
 * y = conv2d(x, w) + bias (bias may be 0: none), then relu if `relu`; NHWC, w: [kh, kw, ci, co], co a multiple of 8.
 * Each output row accumulates tap by tap: for tap (u, v) the valid output columns are one contiguous range, so no
 * padded copy of x and no per-pixel bounds checks.
 */
__attribute__((export_name("conv2d_fwd")))
void conv2d_fwd(const float *x, const float *w, const float *bias, float *y, int b, int h, int wd, int ci, int ho,
                int wo, int co, int kh, int kw, int sh, int sw, int pt, int pl, int relu) {
  for (int bi = 0; bi < b; bi++) {
    const float *xb = x + (long)bi * h * wd * ci;
    for (int oh = 0; oh < ho; oh++) {
      float *yr = y + ((long)bi * ho + oh) * wo * co;
      for (int j = 0; j < wo; j++)
        for (int o = 0; o < co; o += 4)
          wasm_v128_store(yr + j * co + o, bias ? wasm_v128_load(bias + o) : wasm_f32x4_splat(0.0f));
      const int ih0 = oh * sh - pt;
      /* interior columns: every tap's input column inside x */
      int ca = ceil_div(pl, sw), cb = ceil_div(wd + pl - kw + 1, sw);
      if (ca > wo) ca = wo;
      if (cb > wo) cb = wo;
      if (ih0 >= 0 && ih0 + kh <= h && cb - ca >= 4) {
        const int n4 = ca + ((cb - ca) & ~3);
        const int xs = sw * ci;
        for (int ow = ca; ow < n4; ow += 4) {
          const float *xr = xb + ((long)ih0 * wd + (long)ow * sw - pl) * ci;
          for (int o = 0; o < co; o += 8) fwd4x8(xr, xs, wd * ci, w + o, co, yr + ow * co + o, ci, kh, kw);
        }
        fwd_row_taps(xb, w, yr, 0, ca, oh, h, wd, ci, co, kh, kw, sh, sw, pt, pl);
        fwd_row_taps(xb, w, yr, n4, wo, oh, h, wd, ci, co, kh, kw, sh, sw, pt, pl);
      } else {
        fwd_row_taps(xb, w, yr, 0, wo, oh, h, wd, ci, co, kh, kw, sh, sw, pt, pl);
      }
      if (relu) {
        const v128_t z = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < wo * co; j += 4) wasm_v128_store(yr + j, wasm_f32x4_max(wasm_v128_load(yr + j), z));
      }
    }
  }
}

/* ---- group norm (+ SiLU) over NHWC, per image and group of c/groups channels ---- */

/* e^x for |x| <= ~87 (clamped beyond), relative error ~1e-7: 2^n p(r), r = x - n ln 2, p degree-6 Taylor */
static inline v128_t exp_v(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(-87.0f)), wasm_f32x4_splat(88.0f));
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693145751953125f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(1.428606765330187045e-06f)));
  v128_t p = wasm_f32x4_splat(1.0f / 720.0f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 120.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 24.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 6.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0.5f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}

static inline v128_t sigmoid_v(v128_t z) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  return wasm_f32x4_div(one, wasm_f32x4_add(one, exp_v(wasm_f32x4_neg(z))));
}

/* per-channel sums of x and x^2 over the hw pixels of one image into s[c], q[c] (c a multiple of 4) */
static void channel_sums(const float *xb, int hw, int c, float *s, float *q) {
  int cb = 0;
  for (; cb + 16 <= c; cb += 16) {
    v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0, s2 = s0, s3 = s0, q0 = s0, q1 = s0, q2 = s0, q3 = s0;
    const float *xp = xb + cb;
    for (int p = 0; p < hw; p++, xp += c) {
      const v128_t a = wasm_v128_load(xp), b = wasm_v128_load(xp + 4), d = wasm_v128_load(xp + 8), e = wasm_v128_load(xp + 12);
      s0 = wasm_f32x4_add(s0, a); q0 = wasm_f32x4_add(q0, wasm_f32x4_mul(a, a));
      s1 = wasm_f32x4_add(s1, b); q1 = wasm_f32x4_add(q1, wasm_f32x4_mul(b, b));
      s2 = wasm_f32x4_add(s2, d); q2 = wasm_f32x4_add(q2, wasm_f32x4_mul(d, d));
      s3 = wasm_f32x4_add(s3, e); q3 = wasm_f32x4_add(q3, wasm_f32x4_mul(e, e));
    }
    wasm_v128_store(s + cb, s0); wasm_v128_store(s + cb + 4, s1); wasm_v128_store(s + cb + 8, s2); wasm_v128_store(s + cb + 12, s3);
    wasm_v128_store(q + cb, q0); wasm_v128_store(q + cb + 4, q1); wasm_v128_store(q + cb + 8, q2); wasm_v128_store(q + cb + 12, q3);
  }
  for (; cb < c; cb += 4) {
    v128_t s0 = wasm_f32x4_splat(0.0f), q0 = s0;
    const float *xp = xb + cb;
    for (int p = 0; p < hw; p++, xp += c) {
      const v128_t a = wasm_v128_load(xp);
      s0 = wasm_f32x4_add(s0, a); q0 = wasm_f32x4_add(q0, wasm_f32x4_mul(a, a));
    }
    wasm_v128_store(s + cb, s0); wasm_v128_store(q + cb, q0);
  }
}

/* per-channel scale g rstd and shift b - mean g rstd of one image from its group statistics (mean, rstd, var) */
static void affine_of(const float *st, const float *g, const float *b, int c, int cg, float *scale, float *shift) {
  for (int ch = 0; ch < c; ch++) {
    const float mean = st[3 * (ch / cg)], rstd = st[3 * (ch / cg) + 1];
    scale[ch] = g[ch] * rstd;
    shift[ch] = b[ch] - mean * scale[ch];
  }
}

/*
 * y = silu(group_norm(x) g + b) (silu = 0: without the SiLU). x, y: [n, hw, c]; g, b: [c]; stats: [n, groups, 3]
 * (mean, rstd, variance before clipping at 0) written for the backward pass; scratch: 4c floats.
 */
__attribute__((export_name("group_norm_silu")))
void group_norm_silu(const float *x, const float *g, const float *b, float *y, float *stats, float *scratch, int n,
                     int hw, int c, int groups, float eps, int silu) {
  const int cg = c / groups;
  float *s = scratch, *q = scratch + c, *scale = scratch + 2 * c, *shift = scratch + 3 * c;
  for (int i = 0; i < n; i++) {
    const float *xb = x + (long)i * hw * c;
    float *yb = y + (long)i * hw * c;
    float *st = stats + (long)i * groups * 3;
    channel_sums(xb, hw, c, s, q);
    for (int gi = 0; gi < groups; gi++) {
      float sm = 0.0f, sq = 0.0f;
      for (int ch = gi * cg; ch < (gi + 1) * cg; ch++) { sm += s[ch]; sq += q[ch]; }
      const float mean = sm / (float)(hw * cg), var = sq / (float)(hw * cg) - mean * mean;
      st[3 * gi] = mean;
      st[3 * gi + 1] = 1.0f / __builtin_sqrtf((var > 0.0f ? var : 0.0f) + eps);
      st[3 * gi + 2] = var;
    }
    affine_of(st, g, b, c, cg, scale, shift);
    for (int p = 0; p < hw; p++) {
      const float *xp = xb + (long)p * c;
      float *yp = yb + (long)p * c;
      for (int ch = 0; ch < c; ch += 4) {
        const v128_t z = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(xp + ch), wasm_v128_load(scale + ch)), wasm_v128_load(shift + ch));
        wasm_v128_store(yp + ch, silu ? wasm_f32x4_mul(z, sigmoid_v(z)) : z);
      }
    }
  }
}

/*
 * The gradient of group_norm_silu: dx [n, hw, c], and dg, db [c] (summed over the batch), from dy and the forward's
 * stats. With z = x s_c + t_c and dz = dy (sig(z) + y (1 - sig(z))) (dz = dy without the SiLU), per image
 * A_c = sum_hw dz, B_c = sum_hw dz x, D_c = B_c - mu A_c:  dg_c = sum_n rstd D_c,  db_c = sum_n A_c,
 * dx = dz s_c + x alpha_G + beta_G with dL/drstd = sum_G g_c D_c, dL/dvar = -rstd^3 / 2 dL/drstd (0 where the
 * variance was clipped), dL/dmu = -sum_G s_c A_c, alpha = 2 dL/dvar / N_G, beta = (dL/dmu - 2 mu dL/dvar) / N_G.
 * scratch: 4c floats.
 */
__attribute__((export_name("group_norm_silu_grad")))
void group_norm_silu_grad(const float *x, const float *g, const float *b, const float *stats, const float *dy, float *dx,
                          float *dg, float *db, float *scratch, int n, int hw, int c, int groups, int silu) {
  const int cg = c / groups;
  float *A = scratch, *B = scratch + c, *scale = scratch + 2 * c, *shift = scratch + 3 * c;
  for (int ch = 0; ch < c; ch++) { dg[ch] = 0.0f; db[ch] = 0.0f; }
  for (int i = 0; i < n; i++) {
    const float *xb = x + (long)i * hw * c, *dyb = dy + (long)i * hw * c;
    float *dxb = dx + (long)i * hw * c;
    const float *st = stats + (long)i * groups * 3;
    affine_of(st, g, b, c, cg, scale, shift);
    for (int ch = 0; ch < c; ch++) { A[ch] = 0.0f; B[ch] = 0.0f; }
    /* pass 1: dz (kept in dx), and its per-channel sums A, B */
    for (int p = 0; p < hw; p++) {
      const long o = (long)p * c;
      for (int ch = 0; ch < c; ch += 4) {
        const v128_t xv = wasm_v128_load(xb + o + ch);
        v128_t dz = wasm_v128_load(dyb + o + ch);
        if (silu) {
          const v128_t z = wasm_f32x4_add(wasm_f32x4_mul(xv, wasm_v128_load(scale + ch)), wasm_v128_load(shift + ch));
          const v128_t sg = sigmoid_v(z);
          const v128_t yv = wasm_f32x4_mul(z, sg);
          dz = wasm_f32x4_mul(dz, wasm_f32x4_add(sg, wasm_f32x4_mul(yv, wasm_f32x4_sub(wasm_f32x4_splat(1.0f), sg))));
        }
        wasm_v128_store(dxb + o + ch, dz);
        wasm_v128_store(A + ch, wasm_f32x4_add(wasm_v128_load(A + ch), dz));
        wasm_v128_store(B + ch, wasm_f32x4_add(wasm_v128_load(B + ch), wasm_f32x4_mul(dz, xv)));
      }
    }
    /* per group: dx = dz s_c + x alpha_G + beta_G; alpha and beta are written over A and B for pass 2 */
    for (int gi = 0; gi < groups; gi++) {
      const float mean = st[3 * gi], rstd = st[3 * gi + 1], var = st[3 * gi + 2];
      float dRstd = 0.0f, dMu = 0.0f;
      for (int ch = gi * cg; ch < (gi + 1) * cg; ch++) {
        const float D = B[ch] - mean * A[ch];
        dRstd += g[ch] * D;
        dMu -= scale[ch] * A[ch];
        dg[ch] += rstd * D;
        db[ch] += A[ch];
      }
      const float dVar = var > 0.0f ? -0.5f * rstd * rstd * rstd * dRstd : 0.0f;
      const float ng = (float)(hw * cg);
      const float alpha = 2.0f * dVar / ng, beta = (dMu - 2.0f * mean * dVar) / ng;
      for (int ch = gi * cg; ch < (gi + 1) * cg; ch++) { A[ch] = alpha; B[ch] = beta; }
    }
    /* pass 2: dx = dz s_c + x alpha + beta, in place */
    for (int p = 0; p < hw; p++) {
      const long o = (long)p * c;
      for (int ch = 0; ch < c; ch += 4) {
        const v128_t v = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(dxb + o + ch), wasm_v128_load(scale + ch)),
                                                       wasm_f32x4_mul(wasm_v128_load(xb + o + ch), wasm_v128_load(A + ch))),
                                        wasm_v128_load(B + ch));
        wasm_v128_store(dxb + o + ch, v);
      }
    }
  }
}
