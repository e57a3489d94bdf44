#include <math.h>
#include "conv_ref.h"

void conv_ref(const conv_case *c, float (*round)(float), int64_t OH, int64_t OW, const float *x, const float *w,
              const float *gy, double *y, double *sy, double *gx, double *sgx, double *gw, double *sgw) {
    int64_t Cg = c->C / c->groups, Og = c->O / c->groups;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t g = o / Og, yi = ((n * c->O + o) * OH + oh) * OW + ow;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t kh = 0; kh < c->K; kh++)
                            for (int64_t kw = 0; kw < c->K; kw++) {
                                int64_t ih = oh * c->stride - c->pad + kh * c->dil, iw = ow * c->stride - c->pad + kw * c->dil;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int64_t xi = ((n * c->C + g * Cg + ci) * c->H + ih) * c->W + iw;
                                int64_t wi = ((o * Cg + ci) * c->K + kh) * c->K + kw;
                                double xr = round(x[xi]), wr = round(w[wi]), gr = round(gy[yi]);
                                y[yi] += xr * wr;
                                sy[yi] += fabs(xr * wr);
                                gx[xi] += gr * wr;
                                sgx[xi] += fabs(gr * wr);
                                gw[wi] += xr * gr;
                                sgw[wi] += fabs(xr * gr);
                            }
                }
}
