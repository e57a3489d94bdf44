/* LR schedules against hand-computed mmcv sequences. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "testlib.h"

#define AT(s, base, ep, it) md_lr_schedule_at(&(s), (base), (ep), (it), 100, 12, 1200)

Test(schedule, mmdet_1x_step_with_linear_warmup) {
    md_lr_schedule s = { .policy = MD_LR_STEP, .by_epoch = true, .warmup = MD_WARMUP_LINEAR,
                         .warmup_iters = 500, .warmup_ratio = 0.001, .step = { 8, 11 }, .n_step = 2,
                         .gamma = 0.1 };
    cr_assert_float_eq(AT(s, 0.02, 0, 0), 0.02 * 0.001, 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 2, 250), 0.02 * (1 - 0.5 * 0.999), 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 4, 499), 0.02 * (1 - (1.0 / 500) * 0.999), 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 5, 500), 0.02, 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 7, 799), 0.02, 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 8, 800), 0.002, 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 10, 1099), 0.002, 1e-12);
    cr_assert_float_eq(AT(s, 0.02, 11, 1100), 0.0002, 1e-12);
}

Test(schedule, warmup_scales_the_epochs_regular_lr) {
    /* a milestone inside warmup: the warmup factor applies to the decayed lr */
    md_lr_schedule s = { .policy = MD_LR_STEP, .by_epoch = true, .warmup = MD_WARMUP_LINEAR,
                         .warmup_iters = 500, .warmup_ratio = 0.5, .step = { 1 }, .n_step = 1, .gamma = 0.1 };
    cr_assert_float_eq(AT(s, 1.0, 1, 100), 0.1 * (1 - 0.8 * 0.5), 1e-12);
}

Test(schedule, step_int_period_and_min_lr) {
    md_lr_schedule s = { .policy = MD_LR_STEP, .by_epoch = false, .step = { 2 }, .n_step = 1,
                         .step_is_int = true, .gamma = 0.5, .has_min_lr = true, .min_lr = 0.2 };
    double want[] = { 1, 1, 0.5, 0.5, 0.25 < 0.2 ? 0.2 : 0.25, 0.25, 0.2, 0.2 };
    for (int i = 0; i < 8; i++) cr_assert_float_eq(AT(s, 1.0, 0, i), want[i], 1e-12, "iter %d", i);
}

Test(schedule, cosine_poly_exp_inv) {
    md_lr_schedule c = { .policy = MD_LR_COSINE, .by_epoch = true, .has_min_lr_ratio = true, .min_lr_ratio = 0.1 };
    cr_assert_float_eq(AT(c, 1.0, 0, 0), 1.0, 1e-12);
    cr_assert_float_eq(AT(c, 1.0, 6, 600), 0.1 + 0.45, 1e-12);   /* halfway through 12 epochs */
    cr_assert_float_eq(AT(c, 1.0, 12, 1200), 0.1, 1e-12);
    md_lr_schedule c2 = { .policy = MD_LR_COSINE, .by_epoch = false, .has_min_lr = true, .min_lr = 0.0 };
    cr_assert_float_eq(AT(c2, 2.0, 0, 300), 1.0 + cos(M_PI / 4), 1e-12);
    md_lr_schedule p = { .policy = MD_LR_POLY, .by_epoch = false, .power = 2.0 };
    cr_assert_float_eq(AT(p, 1.0, 0, 600), 0.25, 1e-12);
    md_lr_schedule pm = { .policy = MD_LR_POLY, .by_epoch = false, .power = 1.0, .has_min_lr = true, .min_lr = 0.1 };
    cr_assert_float_eq(AT(pm, 1.0, 0, 600), 0.55, 1e-12);
    md_lr_schedule e = { .policy = MD_LR_EXP, .by_epoch = true, .gamma = 0.9 };
    cr_assert_float_eq(AT(e, 1.0, 3, 0), 0.729, 1e-12);
    md_lr_schedule v = { .policy = MD_LR_INV, .by_epoch = false, .gamma = 0.1, .power = 0.5 };
    cr_assert_float_eq(AT(v, 1.0, 0, 30), 0.5, 1e-12);   /* (1 + 3)^-0.5 */
}

Test(schedule, constant_exp_and_by_epoch_warmup) {
    md_lr_schedule k = { .policy = MD_LR_FIXED, .warmup = MD_WARMUP_CONSTANT, .warmup_iters = 10, .warmup_ratio = 0.3 };
    cr_assert_float_eq(AT(k, 2.0, 0, 9), 0.6, 1e-12);
    cr_assert_float_eq(AT(k, 2.0, 0, 10), 2.0, 1e-12);
    md_lr_schedule x = { .policy = MD_LR_FIXED, .warmup = MD_WARMUP_EXP, .warmup_iters = 10, .warmup_ratio = 0.1 };
    cr_assert_float_eq(AT(x, 1.0, 0, 5), pow(0.1, 0.5), 1e-12);
    /* 2 warmup epochs of 100 iterations each */
    md_lr_schedule b = { .policy = MD_LR_FIXED, .warmup = MD_WARMUP_LINEAR, .warmup_iters = 2, .warmup_ratio = 0.0,
                         .warmup_by_epoch = true };
    cr_assert_float_eq(AT(b, 1.0, 1, 150), 0.75, 1e-12);
    cr_assert_float_eq(AT(b, 1.0, 2, 200), 1.0, 1e-12);
}
