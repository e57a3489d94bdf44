/* Modules: state_dict names, train/eval propagation, save/load round trip,
 * and loading a PyTorch-written state dict. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) { ctx = md_ctx_new(NULL); }
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(module, .init = setup, .fini = teardown);

static int frozen_calls;
static void keep_eval(md_module *m, bool training) { (void)training; frozen_calls++; m->training = false; }
static const md_module_class plain = { .name = "Plain" };
static const md_module_class norm_eval = { .name = "NormEval", .on_train = keep_eval };

/* Sequential(Conv2d(3, 4, 3), BatchNorm2d(4)) with PyTorch's names. */
static md_module *make_net(void) {
    md_error err = { 0 };
    md_module *root = md_module_new(sizeof(md_module), &plain);
    md_module *conv = md_module_new(sizeof(md_module), &plain);
    md_module *bn = md_module_new(sizeof(md_module), &norm_eval);
    cr_assert(md_module_add_param(ctx, conv, "weight", MD_DIMS(4, 3, 3, 3), &err));
    cr_assert(md_module_add_param(ctx, conv, "bias", MD_DIMS(4), &err));
    cr_assert(md_module_add_param(ctx, bn, "weight", MD_DIMS(4), &err));
    cr_assert(md_module_add_param(ctx, bn, "bias", MD_DIMS(4), &err));
    cr_assert(md_module_add_buffer(ctx, bn, "running_mean", MD_F32, MD_DIMS(4), &err));
    cr_assert(md_module_add_buffer(ctx, bn, "running_var", MD_F32, MD_DIMS(4), &err));
    cr_assert(md_module_add_buffer(ctx, bn, "num_batches_tracked", MD_I64, 0, NULL, &err));
    cr_assert_eq(md_module_add_child(root, "0", conv, &err), 0);
    cr_assert_eq(md_module_add_child(root, "1", bn, &err), 0);
    return root;
}

static int collect(const char *name, md_tensor *t, bool is_param, void *user) {
    (void)t;
    char *buf = user;
    strcat(buf, name);
    strcat(buf, is_param ? "(p) " : "(b) ");
    return 0;
}

Test(module, names_follow_registration_order) {
    md_module *net = make_net();
    char buf[1024] = "";
    md_module_visit(net, "backbone", collect, buf);
    cr_assert_str_eq(buf, "backbone.0.weight(p) backbone.0.bias(p) backbone.1.weight(p) backbone.1.bias(p) "
                          "backbone.1.running_mean(b) backbone.1.running_var(b) "
                          "backbone.1.num_batches_tracked(b) ");
    cr_assert_eq(md_module_num_params(net, false), 4 * 27 + 4 + 8);
    cr_assert(md_module_find(net, "1.running_var"));
    cr_assert_null(md_module_find(net, "1.nope"));
    md_module_free(net);
}

Test(module, train_mode_propagates_with_override) {
    md_module *net = make_net();
    frozen_calls = 0;
    md_module_train(net, true);
    cr_assert(net->training);
    cr_assert(md_module_child(net, "0")->training);
    cr_assert_not(md_module_child(net, "1")->training);
    cr_assert_eq(frozen_calls, 1);
    md_module_free(net);
}

Test(module, loads_pytorch_state_dict_with_prefix) {
    md_module *net = make_net();
    md_st *st = golden_open("module_state");
    md_load_report rep;
    md_error err = { 0 };
    cr_assert_eq(md_module_load_state(ctx, net, st, "module.", true, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.loaded, 7);
    md_tensor *rv = golden_get(ctx, st, "module.1.running_var");
    assert_close(md_module_find(net, "1.running_var"), rv, 0, "running_var");
    cr_assert_eq(md_i64(md_module_find(net, "1.num_batches_tracked"))[0], 1);
    /* without stripping nothing matches: reported, and an error when strict */
    cr_assert_eq(md_module_load_state(ctx, net, st, NULL, false, &rep, &err), 0);
    cr_assert_eq(rep.missing, 7);
    cr_assert_eq(rep.unexpected, 7);
    cr_assert(strstr(rep.text, "missing: 0.weight"), "%s", rep.text);
    cr_assert_eq(md_module_load_state(ctx, net, st, NULL, true, &rep, &err), -1);
    cr_assert(strstr(err.msg, "7 missing"), "%s", err.msg);
    md_st_close(st);
    md_module_free(net);
}

Test(module, save_load_round_trip_and_shape_mismatch) {
    md_module *a = make_net(), *b = make_net();
    md_rng r;
    md_rng_seed(&r, 3);
    md_tensor_normal_(md_module_find(a, "0.weight"), &r, 0, 1);
    char path[] = "/tmp/mmdet_mod_XXXXXX";
    close(mkstemp(path));
    md_st_writer *w = md_st_writer_new();
    md_error err = { 0 };
    cr_assert_eq(md_module_save_state(a, w, "", &err), 0);
    cr_assert_eq(md_st_writer_save(w, path, &err), 0);
    md_st_writer_free(w);
    md_st *st = md_st_open(path, &err);
    cr_assert(st);
    cr_assert_eq(md_module_load_state(ctx, b, st, NULL, true, NULL, &err), 0, "%s", err.msg);
    assert_close(md_module_find(b, "0.weight"), md_module_find(a, "0.weight"), 0, "weight");
    md_st_close(st);
    /* a model with a different conv shape: strict loading refuses the file,
     * naming both shapes; non-strict loading (mmcv's load_checkpoint) keeps
     * that tensor as it is and reports it */
    md_module *c = md_module_new(sizeof(md_module), &plain);
    md_module *conv = md_module_new(sizeof(md_module), &plain);
    md_tensor *cw = md_module_add_param(ctx, conv, "weight", MD_DIMS(8, 3, 3, 3), &err);
    md_module_add_child(c, "0", conv, &err);
    for (int64_t i = 0; i < md_tensor_numel(cw); i++) md_f32(cw)[i] = (float)i;
    st = md_st_open(path, &err);
    cr_assert_eq(md_module_load_state(ctx, c, st, NULL, true, NULL, &err), -1);
    cr_assert(strstr(err.msg, "size mismatch for 0.weight: the checkpoint has [4, 3, 3, 3] f32, "
                              "the model expects [8, 3, 3, 3] f32"), "%s", err.msg);
    md_load_report rep;
    cr_assert_eq(md_module_load_state(ctx, c, st, NULL, false, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.mismatched, 1);
    cr_assert_eq(rep.unexpected, 6, "0.bias and the five tensors of 1 have no place in c");
    cr_assert(strstr(rep.text, "size mismatch for 0.weight: the checkpoint has [4, 3, 3, 3] f32, "
                               "the model expects [8, 3, 3, 3] f32"), "%s", rep.text);
    for (int64_t i = 0; i < md_tensor_numel(cw); i++) cr_assert_eq(md_f32(cw)[i], (float)i, "element %lld", (long long)i);
    md_st_close(st);
    unlink(path);
    md_module_free(a);
    md_module_free(b);
    md_module_free(c);
}
