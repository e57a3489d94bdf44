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

/* ---- Cyclic and OneCycle LR (mmcv 1.7), iteration-based ---- */
#define IT(s, base, it, max_iters) md_lr_schedule_at(&(s), (base), 0, (it), 100, 1, (max_iters))

Test(schedule, cyclic_lr_cos_linear_and_gamma) {
    /* 10 iterations, one cycle: up over int(0.4 * 10) = 4, then down over 6 */
    md_lr_schedule s = { .policy = MD_LR_CYCLIC, .target_ratio = { 10, 1e-4 }, .cyclic_times = 1,
                         .step_ratio_up = 0.4, .gamma = 1 };
    cr_assert_float_eq(IT(s, 1.0, 0, 10), 1.0, 1e-12);
    cr_assert_float_eq(IT(s, 1.0, 2, 10), 5.5, 1e-12);          /* halfway up: 10 - 9 / 2 */
    cr_assert_float_eq(IT(s, 1.0, 4, 10), 10.0, 1e-12);
    cr_assert_float_eq(IT(s, 1.0, 7, 10), 1e-4 + 0.5 * (10 - 1e-4), 1e-12);
    s.anneal_linear = true;
    cr_assert_float_eq(IT(s, 1.0, 1, 10), 3.25, 1e-12);         /* 1 + 9 / 4 */
    cr_assert_float_eq(IT(s, 1.0, 6, 10), 10 + (1e-4 - 10) / 3, 1e-12);
    /* two cycles of 10, gamma 0.5: the second peaks at 1 - 0.5 + 10 * 0.5 = 5.5 */
    md_lr_schedule g = { .policy = MD_LR_CYCLIC, .target_ratio = { 10, 1e-4 }, .cyclic_times = 2,
                         .step_ratio_up = 0.4, .gamma = 0.5 };
    cr_assert_float_eq(IT(g, 1.0, 2, 20), 5.5, 1e-12);
    cr_assert_float_eq(IT(g, 1.0, 12, 20), 3.25, 1e-12);        /* halfway from 1 to 5.5 */
    cr_assert_float_eq(IT(g, 1.0, 14, 20), 5.5, 1e-12);
    cr_assert_float_eq(IT(g, 1.0, 10, 20), 1.0, 1e-12);
}

Test(schedule, onecycle_lr_two_and_three_phases) {
    /* max_lr 1, div 25: starts at 0.04; 10 steps, pct 0.3: the peak at step 2 */
    md_lr_schedule s = { .policy = MD_LR_ONECYCLE, .max_lr = 1.0, .pct_start = 0.3, .div_factor = 25,
                         .final_div_factor = 1e4 };
    cr_assert_float_eq(IT(s, 123.0, 0, 10), 0.04, 1e-12);        /* the optimizer's lr is not used */
    cr_assert_float_eq(IT(s, 123.0, 1, 10), 0.52, 1e-12);
    cr_assert_float_eq(IT(s, 123.0, 2, 10), 1.0, 1e-12);
    cr_assert_float_eq(IT(s, 123.0, 9, 10), 4e-6, 1e-15);
    cr_assert_float_eq(IT(s, 1.0, 5, 10), 4e-6 + 0.5 * (1 - 4e-6) * (cos(M_PI * 3 / 7) + 1), 1e-12);
    s.total_steps = 20;   /* the cycle is longer than the run */
    cr_assert_float_eq(IT(s, 1.0, 5, 10), 1.0, 1e-12);
    md_lr_schedule t = { .policy = MD_LR_ONECYCLE, .max_lr = 1.0, .pct_start = 0.3, .div_factor = 25,
                         .final_div_factor = 1e4, .three_phase = true, .anneal_linear = true };
    cr_assert_float_eq(IT(t, 1.0, 3, 10), 0.52, 1e-12);          /* phase 2: 1 -> 0.04 over steps 2..4 */
    cr_assert_float_eq(IT(t, 1.0, 4, 10), 0.04, 1e-12);
    cr_assert_float_eq(IT(t, 1.0, 6, 10), 0.04 + (4e-6 - 0.04) * 0.4, 1e-12);
}

Test(schedule, parse_cyclic_and_onecycle) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = { policy = \"cyclic\"; target_ratio = 5.0; cyclic_times = 2; };\n"
                             "b = { policy = \"OneCycle\"; max_lr = 0.1; anneal_strategy = \"linear\"; };\n"
                             "c = { policy = \"cyclic\"; by_epoch = true; };\n"
                             "d = { policy = \"OneCycle\"; };\n"
                             "e = { policy = \"cyclic\"; anneal_strategy = \"cosine\"; };\n", "t.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_lr_schedule s;
    cr_assert_eq(md_lr_schedule_parse(md_cfg_get(c, "a"), &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.policy, MD_LR_CYCLIC);
    cr_assert_not(s.by_epoch);
    cr_assert_float_eq(s.target_ratio[0], 5.0, 0);
    cr_assert_float_eq(s.target_ratio[1], 5e-5, 1e-18);
    cr_assert_eq(s.cyclic_times, 2);
    cr_assert_float_eq(s.gamma, 1.0, 0);
    cr_assert_float_eq(s.step_ratio_up, 0.4, 0);
    cr_assert_eq(md_lr_schedule_parse(md_cfg_get(c, "b"), &s, &err), 0, "%s", err.msg);
    cr_assert(s.anneal_linear);
    cr_assert_float_eq(s.div_factor, 25, 0);
    cr_assert_float_eq(s.final_div_factor, 1e4, 0);
    cr_assert_float_eq(s.pct_start, 0.3, 0);
    cr_assert_neq(md_lr_schedule_parse(md_cfg_get(c, "c"), &s, &err), 0);
    cr_assert(strstr(err.msg, "by_epoch"), "%s", err.msg);
    cr_assert_neq(md_lr_schedule_parse(md_cfg_get(c, "d"), &s, &err), 0);
    cr_assert(strstr(err.msg, "max_lr"), "%s", err.msg);
    cr_assert_neq(md_lr_schedule_parse(md_cfg_get(c, "e"), &s, &err), 0);
    cr_assert(strstr(err.msg, "anneal_strategy"), "%s", err.msg);
    md_cfg_free(c);
}

/* ---- momentum (mmcv MomentumUpdaterHook) ---- */
#define MOM(s, base, ep, it) md_momentum_schedule_at(&(s), (base), (ep), (it), 12, 1200)

Test(momentum, step_cosine_and_clipping) {
    md_momentum_schedule s = { .policy = MD_MOM_STEP, .by_epoch = true, .step = { 2, 4 }, .n_step = 2, .gamma = 0.5 };
    cr_assert_float_eq(MOM(s, 0.9, 0, 0), 0.9, 1e-12);
    cr_assert_float_eq(MOM(s, 0.9, 1, 199), 0.9, 1e-12);
    cr_assert_float_eq(MOM(s, 0.9, 2, 200), 0.45, 1e-12);
    cr_assert_float_eq(MOM(s, 0.9, 5, 500), 0.225, 1e-12);
    s.has_min_momentum = true;
    s.min_momentum = 0.3;
    cr_assert_float_eq(MOM(s, 0.9, 5, 500), 0.3, 1e-12);
    md_momentum_schedule p = { .policy = MD_MOM_STEP, .by_epoch = false, .step = { 3 }, .n_step = 1,
                               .step_is_int = true, .gamma = 0.5 };
    cr_assert_float_eq(MOM(p, 0.8, 0, 5), 0.4, 1e-12);
    cr_assert_float_eq(MOM(p, 0.8, 0, 6), 0.2, 1e-12);
    md_momentum_schedule c = { .policy = MD_MOM_COSINE, .by_epoch = false, .has_min_momentum_ratio = true,
                               .min_momentum_ratio = 0.5 };
    cr_assert_float_eq(MOM(c, 0.9, 0, 300), 0.45 + 0.225 * (cos(M_PI / 4) + 1), 1e-12);
    cr_assert_float_eq(MOM(c, 0.9, 0, 1200), 0.45, 1e-12);
    md_momentum_schedule ce = { .policy = MD_MOM_COSINE, .by_epoch = true, .has_min_momentum = true,
                                .min_momentum = 0.85 };
    cr_assert_float_eq(MOM(ce, 0.95, 6, 0), 0.9, 1e-12);
}

Test(momentum, warmup_divides_the_regular_momentum) {
    md_momentum_schedule s = { .policy = MD_MOM_STEP, .by_epoch = true, .step = { 2 }, .n_step = 1, .gamma = 0.5,
                               .warmup = MD_WARMUP_LINEAR, .warmup_iters = 10, .warmup_ratio = 0.9 };
    cr_assert_float_eq(MOM(s, 0.9, 0, 0), 1.0, 1e-12);            /* 0.9 / (1 - 0.1) */
    cr_assert_float_eq(MOM(s, 0.9, 0, 5), 0.9 / 0.95, 1e-12);
    cr_assert_float_eq(MOM(s, 0.9, 0, 10), 0.9, 1e-12);
    s.warmup = MD_WARMUP_CONSTANT;
    cr_assert_float_eq(MOM(s, 0.9, 0, 9), 1.0, 1e-12);
    s.warmup = MD_WARMUP_EXP;
    cr_assert_float_eq(MOM(s, 0.9, 0, 5), 0.9 / sqrt(0.9), 1e-12);
}

Test(momentum, cyclic_and_onecycle) {
    /* defaults: (0.85/0.95, 1), step_ratio_up 0.4, 10 iterations: down to 0.85 by step 4, back to 0.95 */
    md_momentum_schedule s = { .policy = MD_MOM_CYCLIC, .target_ratio = { 0.85 / 0.95, 1 }, .cyclic_times = 1,
                               .step_ratio_up = 0.4, .gamma = 1 };
    double want[10] = { 0.95, 0.95 - 0.1 * (1 - cos(M_PI / 4)) / 2, 0.9, 0, 0.85, 0, 0, 0.9, 0, 0 };
    for (int i = 0; i < 10; i++)
        if (want[i] > 0)
            cr_assert_float_eq(md_momentum_schedule_at(&s, 0.95, 0, i, 1, 10), want[i], 1e-12, "iter %d", i);
    md_momentum_schedule o = { .policy = MD_MOM_ONECYCLE, .base_momentum = 0.85, .max_momentum = 0.95,
                               .pct_start = 0.3 };
    double w1[] = { 0.95, 0.9, 0.85 };
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(md_momentum_schedule_at(&o, 0.5, 0, i, 1, 10), w1[i], 1e-12, "iter %d", i);
    cr_assert_float_eq(md_momentum_schedule_at(&o, 0.5, 0, 9, 1, 10), 0.95, 1e-12);
    /* past the last phase mmcv keeps annealing with pct > 1 */
    cr_assert_float_eq(md_momentum_schedule_at(&o, 0.5, 0, 10, 1, 10), 0.95 - 0.05 * (cos(M_PI * 8 / 7) + 1), 1e-12);
    o.three_phase = true;
    o.anneal_linear = true;
    cr_assert_float_eq(md_momentum_schedule_at(&o, 0.5, 0, 3, 1, 10), 0.9, 1e-12);   /* 0.85 -> 0.95 over 2..4 */
    cr_assert_float_eq(md_momentum_schedule_at(&o, 0.5, 0, 7, 1, 10), 0.95, 1e-12);
}

Test(momentum, parse_defaults_and_errors) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = { policy = \"step\"; step = [8, 11]; };\n"
                             "b = { policy = \"cyclic\"; target_ratio = [0.8]; cyclic_times = 2; warmup = \"linear\";"
                             " warmup_iters = 5; };\n"
                             "c = { policy = \"OneCycle\"; };\n"
                             "d = { policy = \"CosineAnnealing\"; };\n"
                             "e = { policy = \"stepp\"; step = 2; };\n"
                             "f = { policy = \"step\"; step = 2; min_momentun = 0.1; };\n", "t.cfg", &err);
    cr_assert(c, "%s", err.msg);
    md_momentum_schedule s;
    cr_assert_eq(md_momentum_schedule_parse(md_cfg_get(c, "a"), &s, &err), 0, "%s", err.msg);
    cr_assert(s.by_epoch);
    cr_assert_float_eq(s.gamma, 0.5, 0);
    cr_assert_eq(s.n_step, 2);
    cr_assert_eq(md_momentum_schedule_parse(md_cfg_get(c, "b"), &s, &err), 0, "%s", err.msg);
    cr_assert_not(s.by_epoch);
    cr_assert_float_eq(s.target_ratio[1], 0.8e-5, 1e-18);
    cr_assert_float_eq(s.warmup_ratio, 0.9, 0);
    cr_assert_eq(s.warmup, MD_WARMUP_LINEAR);
    cr_assert_eq(md_momentum_schedule_parse(md_cfg_get(c, "c"), &s, &err), 0, "%s", err.msg);
    cr_assert_float_eq(s.base_momentum, 0.85, 0);
    cr_assert_float_eq(s.max_momentum, 0.95, 0);
    cr_assert_neq(md_momentum_schedule_parse(md_cfg_get(c, "d"), &s, &err), 0);
    cr_assert(strstr(err.msg, "min_momentum"), "%s", err.msg);
    cr_assert_neq(md_momentum_schedule_parse(md_cfg_get(c, "e"), &s, &err), 0);
    cr_assert(strstr(err.msg, "did you mean 'step'"), "%s", err.msg);
    cr_assert_neq(md_momentum_schedule_parse(md_cfg_get(c, "f"), &s, &err), 0);
    cr_assert(strstr(err.msg, "min_momentun"), "%s", err.msg);
    md_cfg_free(c);
}
