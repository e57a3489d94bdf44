/* Config: loading, base_ inheritance (mmcv's _base_ rules), delete_,
 * variables, --cfg-options (mmcv's DictAction rules), dump round trip and
 * key schemas. Expected values are worked out by hand from the fixture
 * files under tests/configs/config/. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mmdet/mmdet.h>

#define DIR "tests/configs/config/"

static md_cfg *load_ok(const char *path) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_load(path, &err);
    cr_assert(c, "loading %s failed: %s", path, err.msg);
    return c;
}

/* Loads a file that must fail; returns the message. */
static md_error load_fail(const char *path, int code) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_load(path, &err);
    cr_assert_null(c, "%s loaded but must fail", path);
    cr_assert_eq(err.code, code, "%s: code %d, want %d (%s)", path, err.code, code, err.msg);
    return err;
}

#define assert_has(msg, needle) cr_assert(strstr((msg), (needle)), "message '%s' lacks '%s'", (msg), (needle))

static md_cfg *parse_ok(const char *text) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, DIR "inline.cfg", &err);
    cr_assert(c, "parse failed: %s", err.msg);
    return c;
}

/* ---- inheritance ---- */

Test(config, three_levels_of_bases_merge) {
    md_cfg *c = load_ok(DIR "retinanet/retinanet_child.cfg");
    /* child over mid over the model base */
    cr_assert_eq(md_cfg_int(c, "model.backbone.depth", 0), 18);
    cr_assert_eq(md_cfg_int(c, "model.bbox_head.num_classes", 0), 5);  /* from mid */
    cr_assert_str_eq(md_cfg_str(c, "model.type", ""), "RetinaNet");     /* untouched base value */
    cr_assert_float_eq(md_cfg_float(c, "model.bbox_head.loss_cls.gamma", 0), 2.0, 1e-12);
    /* merged, not replaced: siblings of an overridden key survive */
    cr_assert_str_eq(md_cfg_str(c, "model.backbone.norm_cfg.type", ""), "BN");
    cr_assert_eq(md_cfg_int(c, "model.neck.out_channels", 0), 256);
    /* lists replace lists */
    const md_cfg *oi = md_cfg_get(c, "model.backbone.out_indices");
    cr_assert_eq(md_cfg_kind(oi), MD_CFG_LIST);
    cr_assert_eq(md_cfg_len(oi), 1);
    cr_assert_eq(md_cfg_as_int(md_cfg_at(oi, 0)), 3);
    cr_assert_eq(md_cfg_len(md_cfg_get(c, "model.neck.in_channels")), 4);
    cr_assert_eq(md_cfg_int(c, "model.neck.in_channels.0", 0), 64);
    /* a value over a group replaces it (mmcv: only dict-over-value needs delete_) */
    cr_assert_eq(md_cfg_kind(md_cfg_get(c, "model.backbone.init_cfg")), MD_CFG_NONE);
    /* delete_ in mid replaced the SGD optimizer: no momentum left */
    cr_assert_str_eq(md_cfg_str(c, "optimizer.type", ""), "Adam");
    cr_assert_float_eq(md_cfg_float(c, "optimizer.lr", 0), 0.001, 1e-15);
    cr_assert_not(md_cfg_has(c, "optimizer.momentum"));
    cr_assert_not(md_cfg_has(c, "optimizer.delete_"));
    /* second level of bases (default_runtime -> runtime_common) */
    cr_assert_str_eq(md_cfg_str(c, "dist_params.backend", ""), "nccl");
    cr_assert_eq(md_cfg_int(c, "log_config.interval", 0), 50);
    /* base_ itself is gone at every level */
    cr_assert_not(md_cfg_has(c, "base_"));
    /* None spelled "None" in a file */
    cr_assert_eq(md_cfg_kind(md_cfg_get(c, "load_from")), MD_CFG_NONE);
    cr_assert_null(md_cfg_str(c, "load_from", "dflt"));
    /* keys keep the order of the bases, then the child's new keys */
    cr_assert_str_eq(md_cfg_name(md_cfg_at(c, 0)), "model");
    cr_assert_str_eq(md_cfg_name(md_cfg_at(c, 1)), "dataset_type");
    cr_assert_str_eq(md_cfg_name(md_cfg_at(c, md_cfg_len(c) - 1)), "unknown_var");
    md_cfg_free(c);
}

Test(config, nodes_remember_file_and_line) {
    md_cfg *c = load_ok(DIR "retinanet/retinanet_child.cfg");
    const md_cfg *gamma = md_cfg_get(c, "model.bbox_head.loss_cls.gamma");
    cr_assert_str_eq(md_cfg_file(gamma), DIR "base/models/tiny_retinanet.cfg");
    cr_assert_eq(md_cfg_line(gamma), 16);
    const md_cfg *depth = md_cfg_get(c, "model.backbone.depth");
    cr_assert_str_eq(md_cfg_file(depth), DIR "retinanet/retinanet_child.cfg");
    cr_assert_eq(md_cfg_line(depth), 4);
    const md_cfg *ncls = md_cfg_get(c, "model.bbox_head.num_classes");
    cr_assert_str_eq(md_cfg_file(ncls), DIR "retinanet/retinanet_mid.cfg");
    cr_assert_eq(md_cfg_line(ncls), 7);
    md_cfg_free(c);
}

Test(config, duplicate_key_among_bases_names_both_files) {
    md_error e = load_fail(DIR "dup/dup_child.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, DIR "dup/dup_child.cfg:2:");
    assert_has(e.msg, "duplicate key 'optimizer' among bases");
    assert_has(e.msg, "'dup_x.cfg' (" DIR "dup/dup_x.cfg:2)");
    assert_has(e.msg, "'dup_y.cfg' (" DIR "dup/dup_y.cfg:2)");
}

Test(config, inheritance_cycle_prints_the_chain) {
    md_error e = load_fail(DIR "cycle/cycle_a.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, "inheritance cycle: " DIR "cycle/cycle_a.cfg -> " DIR "cycle/cycle_b.cfg -> " DIR
                      "cycle/cycle_c.cfg -> " DIR "cycle/cycle_a.cfg");
    /* entering the cycle elsewhere shows it from there */
    e = load_fail(DIR "cycle/cycle_b.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, "inheritance cycle: " DIR "cycle/cycle_b.cfg -> " DIR "cycle/cycle_c.cfg -> " DIR
                      "cycle/cycle_a.cfg -> " DIR "cycle/cycle_b.cfg");
}

Test(config, self_inheritance_is_a_cycle) {
    md_error err = { 0 };
    char path[] = "/tmp/md_cfg_self_XXXXXX.cfg";
    int fd = mkstemps(path, 4);
    cr_assert(fd >= 0);
    const char *slash = strrchr(path, '/');
    char text[256];
    int n = snprintf(text, sizeof text, "base_ = \"%s\";\na = 1;\n", slash + 1);
    cr_assert(write(fd, text, (size_t)n) == n);
    close(fd);
    md_cfg *c = md_cfg_load(path, &err);
    unlink(path);
    cr_assert_null(c);
    assert_has(err.msg, "inheritance cycle");
}

Test(config, missing_base_names_path_and_referrer) {
    md_error e = load_fail(DIR "missing_base.cfg", MD_ERR_IO);
    assert_has(e.msg, DIR "missing_base.cfg:2:");
    assert_has(e.msg, "base file 'base/not_there.cfg' not found");
    assert_has(e.msg, "'" DIR "base/not_there.cfg'");
}

Test(config, missing_file) {
    md_error e = load_fail(DIR "no_such_file.cfg", MD_ERR_IO);
    assert_has(e.msg, DIR "no_such_file.cfg");
    assert_has(e.msg, "No such file");
}

Test(config, syntax_error_has_file_and_line) {
    md_error e = load_fail(DIR "syntax_error.cfg", MD_ERR_PARSE);
    cr_assert_eq(strncmp(e.msg, DIR "syntax_error.cfg:3: ", strlen(DIR "syntax_error.cfg:3: ")), 0, "%s", e.msg);
    /* in a base: the base's own line, and who included it */
    e = load_fail(DIR "syntax_in_base.cfg", MD_ERR_PARSE);
    assert_has(e.msg, DIR "syntax_in_base.cfg:1: in base 'syntax_error.cfg'");
    assert_has(e.msg, DIR "syntax_error.cfg:3: ");
    /* parsed text: the path given stands for the file */
    md_error err = { 0 };
    cr_assert_null(md_cfg_parse("a = 1;\nb = [1, 2.5];\n", "virtual.cfg", &err));
    assert_has(err.msg, "virtual.cfg:2: ");
}

Test(config, group_over_value_needs_delete) {
    md_error e = load_fail(DIR "group_over_value.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, DIR "group_over_value.cfg:2: 'log_level' is a group here but a string in the base (" DIR
                      "base/default_runtime.cfg:3)");
    assert_has(e.msg, "delete_ = true;");
    md_cfg *c = load_ok(DIR "group_over_value_deleted.cfg");
    cr_assert_str_eq(md_cfg_str(c, "log_level.level", ""), "INFO");
    cr_assert_not(md_cfg_has(c, "log_level.delete_"));
    /* delete_ over a group: the base's interval is gone */
    cr_assert_not(md_cfg_has(c, "checkpoint_config.interval"));
    cr_assert_eq(md_cfg_bool(c, "checkpoint_config.by_epoch", true), false);
    md_cfg_free(c);
}

Test(config, bad_base_value) {
    md_error e = load_fail(DIR "bad_base_type.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, DIR "bad_base_type.cfg:1: base_ must be");
}

Test(config, parse_text_resolves_bases_from_its_path) {
    md_cfg *c = parse_ok("base_ = \"base/schedule_1x.cfg\";\noptimizer = { lr = 0.01; };\n");
    cr_assert_float_eq(md_cfg_float(c, "optimizer.lr", 0), 0.01, 1e-15);
    cr_assert_float_eq(md_cfg_float(c, "optimizer.momentum", 0), 0.9, 1e-15);
    cr_assert_eq(md_cfg_line(md_cfg_get(c, "optimizer.lr")), 2);
    cr_assert_str_eq(md_cfg_file(md_cfg_get(c, "optimizer.lr")), DIR "inline.cfg");
    md_cfg_free(c);
}

Test(config, delete_without_base_key_is_dropped) {
    md_cfg *c = parse_ok("a = { delete_ = true; b = { delete_ = false; c = 1; }; };\nl = ({ delete_ = true; x = 1; });");
    cr_assert_not(md_cfg_has(c, "a.delete_"));
    cr_assert_not(md_cfg_has(c, "a.b.delete_"));
    cr_assert_not(md_cfg_has(c, "l.0.delete_"));
    cr_assert_eq(md_cfg_int(c, "a.b.c", 0), 1);
    md_cfg_free(c);
}

/* ---- variables ---- */

Test(config, predefined_variables) {
    md_cfg *c = load_ok(DIR "retinanet/retinanet_child.cfg");
    char *dir = realpath(DIR "retinanet", NULL);
    cr_assert(dir);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/work_dirs/retinanet_child", dir);
    free(dir);
    cr_assert_str_eq(md_cfg_str(c, "work_dir", ""), want);
    cr_assert_str_eq(md_cfg_str(c, "file_name", ""), "retinanet_child.cfg");
    cr_assert_str_eq(md_cfg_str(c, "file_ext", ""), ".cfg");
    /* in a base, the base's own name; spaces inside the braces allowed */
    cr_assert_str_eq(md_cfg_str(c, "runtime_dir_name", ""), "default_runtime");
    cr_assert_str_eq(md_cfg_str(c, "runtime_file", ""), "runtime_common.cfg");
    /* unknown names stay as written */
    cr_assert_str_eq(md_cfg_str(c, "unknown_var", ""), "{{notAVariable}}");
    md_cfg_free(c);
}

Test(config, base_variables_keep_type_or_embed_as_text) {
    md_cfg *c = load_ok(DIR "retinanet/retinanet_child.cfg");
    /* the whole train_pipeline list of the bases, typed */
    const md_cfg *p = md_cfg_get(c, "data.train.pipeline");
    cr_assert_eq(md_cfg_kind(p), MD_CFG_LIST);
    cr_assert(md_cfg_equal(p, md_cfg_get(c, "train_pipeline")));
    cr_assert_float_eq(md_cfg_float(c, "data.train.pipeline.2.flip_ratio", 0), 0.5, 1e-15);
    /* merged bases: mid's Adam lr and num_classes 5, not the originals */
    cr_assert_str_eq(md_cfg_str(c, "lr_note", ""), "lr=0.001 classes=5");
    cr_assert_eq(md_cfg_kind(md_cfg_get(c, "max_epochs")), MD_CFG_INT);
    cr_assert_eq(md_cfg_int(c, "max_epochs", 0), 12);
    cr_assert_eq(md_cfg_int(c, "second_step", 0), 11); /* list index in the path */
    md_cfg_free(c);
}

Test(config, base_variable_errors) {
    md_error e = load_fail(DIR "undefined_base_var.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, DIR "undefined_base_var.cfg:2: {{base_.optimizer.nesterov}}");
    e = load_fail(DIR "embed_group_var.cfg", MD_ERR_CONFIG);
    assert_has(e.msg, DIR "embed_group_var.cfg:2:");
    assert_has(e.msg, "cannot be embedded");
    md_error err = { 0 };
    cr_assert_null(md_cfg_parse("a = \"{{base_.x}}\";", "nobase.cfg", &err));
    assert_has(err.msg, "nobase.cfg:1:");
}

/* ---- --cfg-options ---- */

static md_cfg *opts_cfg(void) {
    return parse_ok("model = { backbone = { depth = 50; }; };\n"
                    "data = { train = { pipeline = ( { type = \"Load\"; }, { type = \"Resize\"; img_scale = [1333, 800]; } ); }; };\n"
                    "lr = 0.02;\nsteps = [8, 11];\n");
}

static md_cfg *opt_value(const char *opt) {
    md_cfg *c = opts_cfg();
    md_error err = { 0 };
    cr_assert_eq(md_cfg_apply_option(c, opt, &err), 0, "%s: %s", opt, err.msg);
    return c;
}

Test(config, option_scalars_int_float_bool_none_string) {
    struct { const char *opt; md_cfg_type t; double num; const char *str; } cases[] = {
        { "v=3", MD_CFG_INT, 3, NULL },
        { "v=-7", MD_CFG_INT, -7, NULL },
        { "v=+7", MD_CFG_INT, 7, NULL },
        { "v=1_000", MD_CFG_INT, 1000, NULL },        /* Python int() */
        { "v=0.5", MD_CFG_FLOAT, 0.5, NULL },
        { "v=1e-3", MD_CFG_FLOAT, 1e-3, NULL },
        { "v=.5", MD_CFG_FLOAT, 0.5, NULL },
        { "v=3.", MD_CFG_FLOAT, 3, NULL },
        { "v=99999999999999999999", MD_CFG_FLOAT, 1e20, NULL }, /* beyond int64 */
        { "v=true", MD_CFG_BOOL, 1, NULL },
        { "v=False", MD_CFG_BOOL, 0, NULL },
        { "v=TRUE", MD_CFG_BOOL, 1, NULL },           /* mmcv lower()s */
        { "v=None", MD_CFG_NONE, 0, NULL },
        { "v=none", MD_CFG_STRING, 0, "none" },       /* only exactly None */
        { "v=abc", MD_CFG_STRING, 0, "abc" },
        { "v='abc'", MD_CFG_STRING, 0, "abc" },       /* quotes strip */
        { "v=\"a b c\"", MD_CFG_STRING, 0, "abc" },   /* mmcv drops spaces */
        { "v=0x10", MD_CFG_STRING, 0, "0x10" },       /* not a Python int/float */
        { "v=", MD_CFG_STRING, 0, "" },
        { "v=1=2", MD_CFG_STRING, 0, "1=2" },         /* split at the first '=' */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        md_cfg *c = opt_value(cases[i].opt);
        const md_cfg *v = md_cfg_get(c, "v");
        cr_assert_eq(md_cfg_kind(v), cases[i].t, "%s: kind %s", cases[i].opt, md_cfg_type_name(md_cfg_kind(v)));
        if (cases[i].t == MD_CFG_STRING) cr_assert_str_eq(md_cfg_as_str(v), cases[i].str, "%s", cases[i].opt);
        else if (cases[i].t != MD_CFG_NONE)
            cr_assert_float_eq(md_cfg_as_float(v), cases[i].num, 1e-12, "%s", cases[i].opt);
        cr_assert_str_eq(md_cfg_file(v), "--cfg-options");
        md_cfg_free(c);
    }
}

/* Parses `value` and compares with the tree of `want` (libconfig text). */
static void check_value(const char *value, const char *want) {
    md_error err = { 0 };
    md_cfg *v = md_cfg_parse_option_value(value, &err);
    cr_assert(v, "%s: %s", value, err.msg);
    char text[512];
    snprintf(text, sizeof text, "v = %s;", want);
    md_cfg *w = md_cfg_parse(text, "want.cfg", &err);
    cr_assert(w, "%s", err.msg);
    char *got = md_cfg_dump_string(v);
    cr_assert(md_cfg_equal(v, md_cfg_get(w, "v")), "'%s' parsed as %s, want %s", value, got, want);
    free(got);
    md_cfg_free(v);
    md_cfg_free(w);
}

Test(config, option_lists_tuples_nesting) {
    check_value("[1,2,3]", "[1, 2, 3]");
    check_value("(1,2)", "[1, 2]");                 /* a tuple is a list */
    check_value("1,2", "[1, 2]");                   /* bare commas: a list */
    check_value("a,b", "[\"a\", \"b\"]");
    check_value("[(1,2),(3,4)]", "([1, 2], [3, 4])");
    check_value("[[1,[2,3]],4]", "((1, [2, 3]), 4)");
    check_value("(1, 2.5, [x, 'y'], None, true)", "(1, 2.5, [\"x\", \"y\"], \"None\", true)");
    check_value("[]", "[]");
    check_value("()", "[]");
    check_value("[1,]", "[1]");
    check_value("\"[640, 480]\"", "[640, 480]");     /* quoted from a shell */
    check_value("[1,,2]", "(1, \"\", 2)");           /* mmcv: an empty element is '' */
}

Test(config, option_bracket_errors) {
    md_error err = { 0 };
    cr_assert_null(md_cfg_parse_option_value("[1,2", &err));
    assert_has(err.msg, "imbalanced brackets");
    md_cfg *c = opts_cfg();
    cr_assert_eq(md_cfg_apply_option(c, "v=[(1,2]", &err), -1);
    assert_has(err.msg, "--cfg-options 'v=[(1,2]'");
    assert_has(err.msg, "imbalanced brackets");
    md_cfg_free(c);
}

Test(config, option_dotted_keys_and_list_indices) {
    md_cfg *c = opts_cfg();
    md_error err = { 0 };
    const char *opts[] = { "model.backbone.depth=18", "data.train.pipeline.1.img_scale=(640,480)",
                           "steps.1=20", "optimizer.type=SGD", "lr=0.01" };
    cr_assert_eq(md_cfg_apply_options(c, opts, 5, &err), 0, "%s", err.msg);
    cr_assert_eq(md_cfg_int(c, "model.backbone.depth", 0), 18);
    cr_assert_eq(md_cfg_int(c, "data.train.pipeline.1.img_scale.0", 0), 640);
    cr_assert_eq(md_cfg_int(c, "data.train.pipeline.1.img_scale.1", 0), 480);
    cr_assert_str_eq(md_cfg_str(c, "data.train.pipeline.1.type", ""), "Resize"); /* merged into the item */
    cr_assert_eq(md_cfg_int(c, "steps.0", 0), 8);
    cr_assert_eq(md_cfg_int(c, "steps.1", 0), 20);
    /* missing groups are created, like mmcv merging a dict */
    cr_assert_str_eq(md_cfg_str(c, "optimizer.type", ""), "SGD");
    cr_assert_float_eq(md_cfg_float(c, "lr", 0), 0.01, 1e-15);
    md_cfg_free(c);
}

Test(config, option_errors) {
    md_cfg *c = opts_cfg();
    md_error err = { 0 };
    cr_assert_eq(md_cfg_apply_option(c, "data.train.pipeline.2.type=X", &err), -1);
    assert_has(err.msg, "index 2 is out of range for 'data.train.pipeline' (a list of 2, " DIR "inline.cfg:2)");
    cr_assert_eq(md_cfg_apply_option(c, "steps.x=1", &err), -1);
    assert_has(err.msg, "'steps' is a list");
    cr_assert_eq(md_cfg_apply_option(c, "model.0=1", &err), -1);
    assert_has(err.msg, "not a list");
    cr_assert_eq(md_cfg_apply_option(c, "lr.x=1", &err), -1);
    assert_has(err.msg, "cannot set keys inside 'lr'");
    assert_has(err.msg, "lr.delete_=true");
    cr_assert_eq(md_cfg_apply_option(c, "novalue", &err), -1);
    assert_has(err.msg, "expected key=value");
    cr_assert_eq(md_cfg_apply_option(c, "a..b=1", &err), -1);
    assert_has(err.msg, "empty part");
    cr_assert_eq(md_cfg_apply_option(c, "a.b c=1", &err), -1);
    assert_has(err.msg, "'b c' is neither a key name");
    const char *two[] = { "x=1", "x.y=2" };
    cr_assert_eq(md_cfg_apply_options(c, two, 2, &err), -1);
    /* nothing of a failed batch is applied */
    cr_assert_not(md_cfg_has(c, "x"));
    const char *three[] = { "lr=0.5", "model.backbone.depth=101", "steps.7=1" };
    cr_assert_eq(md_cfg_apply_options(c, three, 3, &err), -1);
    assert_has(err.msg, "index 7 is out of range");
    cr_assert_float_eq(md_cfg_float(c, "lr", 0), 0.02, 1e-15);
    cr_assert_eq(md_cfg_int(c, "model.backbone.depth", 0), 50);
    md_cfg_free(c);
}

Test(config, option_delete_replaces_group) {
    md_cfg *c = opts_cfg();
    md_error err = { 0 };
    const char *opts[] = { "model.backbone.delete_=true", "model.backbone.type=ResNeXt" };
    cr_assert_eq(md_cfg_apply_options(c, opts, 2, &err), 0, "%s", err.msg);
    cr_assert_str_eq(md_cfg_str(c, "model.backbone.type", ""), "ResNeXt");
    cr_assert_not(md_cfg_has(c, "model.backbone.depth"));
    cr_assert_not(md_cfg_has(c, "model.backbone.delete_"));
    /* and a scalar made into a group */
    const char *o2[] = { "lr.delete_=True", "lr.base=0.1" };
    cr_assert_eq(md_cfg_apply_options(c, o2, 2, &err), 0, "%s", err.msg);
    cr_assert_float_eq(md_cfg_float(c, "lr.base", 0), 0.1, 1e-15);
    md_cfg_free(c);
}

Test(config, option_later_wins) {
    md_cfg *c = opts_cfg();
    md_error err = { 0 };
    const char *opts[] = { "lr=1", "lr=2" };
    cr_assert_eq(md_cfg_apply_options(c, opts, 2, &err), 0);
    cr_assert_eq(md_cfg_int(c, "lr", 0), 2);
    md_cfg_free(c);
}

/* ---- dump ---- */

static void round_trip(const md_cfg *c) {
    char *text = md_cfg_dump_string(c);
    cr_assert(text);
    md_error err = { 0 };
    md_cfg *back = md_cfg_parse(text, "dump.cfg", &err);
    cr_assert(back, "dump does not load: %s\n%s", err.msg, text);
    char *again = md_cfg_dump_string(back);
    cr_assert(md_cfg_equal(c, back), "round trip differs:\n%s\nvs\n%s", text, again);
    cr_assert_str_eq(text, again);
    free(again);
    free(text);
    md_cfg_free(back);
}

Test(config, dump_round_trip_of_a_merged_config) {
    md_cfg *c = load_ok(DIR "retinanet/retinanet_child.cfg");
    round_trip(c);
    md_cfg_free(c);
}

Test(config, dump_round_trip_of_awkward_values) {
    md_cfg *c = md_cfg_new_group();
    md_cfg_set_str(c, "quotes", "say \"hi\"\\ there\n\ttab\x01\x7f end");
    md_cfg_set_str(c, "empty", "");
    md_cfg_set_str(c, "braces", "{{not a var}}");
    md_cfg_set_int(c, "big", 5000000000LL);
    md_cfg_set_int(c, "neg_big", -5000000000LL);
    md_cfg_set_int(c, "int_min", INT64_MIN);
    md_cfg_set_int(c, "i32", -2147483648LL);
    md_cfg_set_float(c, "tenth", 0.1);
    md_cfg_set_float(c, "tiny", 1e-5);
    md_cfg_set_float(c, "huge", 1e300);
    md_cfg_set_float(c, "whole", 3.0);
    md_cfg_set_float(c, "third", 1.0 / 3.0);
    md_cfg_set_float(c, "inf", INFINITY);
    md_cfg_set_bool(c, "flag", false);
    md_cfg_set_none(c, "nothing");
    md_cfg_set_group(c, "empty_group");
    md_cfg_set_list(c, "empty_list");
    md_cfg *mixed = md_cfg_set_list(c, "mixed");
    md_cfg_append_int(mixed, 1);
    md_cfg_append_str(mixed, "two");
    md_cfg_append_float(mixed, 3.5);
    md_cfg_append_int(mixed, 1LL << 40);
    md_cfg *g = md_cfg_append_group(mixed);
    md_cfg_set_none(g, "x");
    md_cfg *inner = md_cfg_set_list(g, "inner");
    md_cfg_append_copy(inner, mixed); /* a copy of the list so far */
    md_cfg *ints = md_cfg_set_list(c, "ints");
    md_cfg_append_int(ints, 1);
    md_cfg_append_int(ints, 1LL << 40); /* a 64-bit item: not a libconfig array */
    round_trip(c);
    /* types survive: 3.0 stays a float, 5e9 an int */
    char *text = md_cfg_dump_string(c);
    md_cfg *back = md_cfg_parse(text, "dump.cfg", NULL);
    cr_assert_eq(md_cfg_kind(md_cfg_get(back, "whole")), MD_CFG_FLOAT);
    cr_assert_eq(md_cfg_int(back, "big", 0), 5000000000LL);
    cr_assert_eq(md_cfg_kind(md_cfg_get(back, "nothing")), MD_CFG_NONE);
    cr_assert(isinf(md_cfg_float(back, "inf", 0)));
    free(text);
    md_cfg_free(back);
    md_cfg_free(c);
}

Test(config, dump_file_and_refusal_of_bad_names) {
    md_cfg *c = load_ok(DIR "group_over_value_deleted.cfg");
    char path[] = "/tmp/md_cfg_dump_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    md_error err = { 0 };
    cr_assert_eq(md_cfg_dump_file(c, path, &err), 0, "%s", err.msg);
    md_cfg *back = md_cfg_load(path, &err);
    unlink(path);
    cr_assert(back, "%s", err.msg);
    cr_assert(md_cfg_equal(c, back));
    md_cfg_free(back);
    md_cfg_set_int(md_cfg_get_mut(c, "log_level"), "9lives", 1);
    cr_assert_eq(md_cfg_dump_file(c, "/tmp/md_cfg_never_written.cfg", &err), -1);
    assert_has(err.msg, "'log_level.9lives' is not a libconfig setting name");
    cr_assert_null(md_cfg_dump_string(c));
    md_cfg_free(c);
}

/* ---- navigation, reads, building ---- */

Test(config, path_and_lookup) {
    md_cfg *c = load_ok(DIR "retinanet/retinanet_child.cfg");
    char buf[256];
    const md_cfg *item = md_cfg_get(c, "data.train.pipeline.1");
    cr_assert_str_eq(md_cfg_path(item, buf, sizeof buf), "data.train.pipeline.1");
    cr_assert_str_eq(md_cfg_path(md_cfg_get(item, "img_scale.0"), buf, sizeof buf), "data.train.pipeline.1.img_scale.0");
    cr_assert_str_eq(md_cfg_path(c, buf, sizeof buf), "");
    cr_assert_null(md_cfg_name(item));
    cr_assert_str_eq(md_cfg_name(md_cfg_parent(item)), "pipeline");
    cr_assert_null(md_cfg_get(c, "data.train.pipeline.3"));
    cr_assert_null(md_cfg_get(c, "data.train.nope"));
    cr_assert_null(md_cfg_get(c, "model.type.x"));
    cr_assert_eq(md_cfg_get(c, ""), c);
    md_cfg_free(c);
}

Test(config, typed_reads) {
    md_cfg *c = parse_ok("i = 3;\nf = 2.5;\nb = true;\ns = \"x\";\nn = \"None\";\nl = [1, 2, 3];\nfl = (1, 2.5);\n");
    md_error err = { 0 };
    int64_t iv = 0;
    double fv = 0;
    bool bv = false;
    const char *sv = NULL;
    cr_assert_eq(md_cfg_read_int(c, "i", &iv, &err), 0);
    cr_assert_eq(iv, 3);
    cr_assert_eq(md_cfg_read_float(c, "i", &fv, &err), 0); /* an int is a float */
    cr_assert_float_eq(fv, 3.0, 0);
    cr_assert_eq(md_cfg_read_bool(c, "b", &bv, &err), 0);
    cr_assert(bv);
    cr_assert_eq(md_cfg_read_str(c, "s", &sv, &err), 0);
    cr_assert_str_eq(sv, "x");
    iv = 42;
    cr_assert_eq(md_cfg_read_int(c, "absent", &iv, &err), 1);
    cr_assert_eq(md_cfg_read_int(c, "n", &iv, &err), 1); /* None reads as absent */
    cr_assert_eq(iv, 42);
    cr_assert_eq(md_cfg_read_int(c, "f", &iv, &err), -1);
    assert_has(err.msg, DIR "inline.cfg:2: f: expected int, got float");
    cr_assert_eq(md_cfg_read_str(c, "l", &sv, &err), -1);
    assert_has(err.msg, "expected string, got list");
    /* defaults */
    cr_assert_eq(md_cfg_int(c, "absent", 7), 7);
    cr_assert_eq(md_cfg_int(c, "n", 7), 7);
    cr_assert_eq(md_cfg_int(c, "f", 0), 2);
    cr_assert_float_eq(md_cfg_float(c, "i", 0), 3.0, 0);
    cr_assert_str_eq(md_cfg_str(c, "absent", "d"), "d");
    /* arrays */
    int64_t ia[4];
    double fa[4];
    cr_assert_eq(md_cfg_int_array(c, "l", ia, 4, &err), 3);
    cr_assert_eq(ia[2], 3);
    cr_assert_eq(md_cfg_int_array(c, "i", ia, 4, &err), 1); /* a single number */
    cr_assert_eq(ia[0], 3);
    cr_assert_eq(md_cfg_int_array(c, "absent", ia, 4, &err), 0);
    cr_assert_eq(md_cfg_int_array(c, "fl", ia, 4, &err), -1);
    assert_has(err.msg, "fl: expected integers, got float");
    cr_assert_eq(md_cfg_int_array(c, "l", ia, 2, &err), -1);
    assert_has(err.msg, "at most 2");
    cr_assert_eq(md_cfg_float_array(c, "fl", fa, 4, &err), 2);
    cr_assert_float_eq(fa[1], 2.5, 0);
    cr_assert_eq(md_cfg_float_array(c, "s", fa, 4, &err), -1);
    md_cfg_free(c);
}

Test(config, building_trees) {
    md_cfg *c = md_cfg_new_group();
    md_cfg_set_int(c, "a", 1);
    md_cfg_set_str(c, "b", "x");
    md_cfg_set_float(c, "a", 2.5); /* replaces, keeps the position */
    cr_assert_eq(md_cfg_len(c), 2);
    cr_assert_str_eq(md_cfg_name(md_cfg_at(c, 0)), "a");
    cr_assert_eq(md_cfg_kind(md_cfg_at(c, 0)), MD_CFG_FLOAT);
    md_cfg *g = md_cfg_set_group(c, "g");
    md_cfg_set_bool(g, "on", true);
    md_cfg *copy = md_cfg_set_copy(c, "h", g);
    cr_assert(md_cfg_equal(copy, g));
    cr_assert_neq(copy, g);
    md_cfg *clone = md_cfg_clone(c);
    cr_assert(md_cfg_equal(clone, c));
    md_cfg_set_bool(g, "on", false);
    cr_assert_not(md_cfg_equal(clone, c)); /* deep copy */
    cr_assert_eq(md_cfg_remove(c, "b"), 0);
    cr_assert_eq(md_cfg_remove(c, "b"), -1);
    cr_assert_eq(md_cfg_len(c), 3);
    cr_assert_null(md_cfg_append_int(c, 1)); /* not a list */
    cr_assert_null(md_cfg_set_int(md_cfg_set_list(c, "l"), "k", 1)); /* not a group */
    /* merge with delete_ from code */
    md_cfg *child = md_cfg_new_group();
    md_cfg *cg = md_cfg_set_group(child, "g");
    md_cfg_set_int(cg, "n", 3);
    md_error err = { 0 };
    cr_assert_eq(md_cfg_merge(clone, child, &err), 0);
    cr_assert_eq(md_cfg_len(md_cfg_get(clone, "g")), 2);
    md_cfg_set_bool(cg, "delete_", true);
    cr_assert_eq(md_cfg_merge(clone, child, &err), 0);
    cr_assert_eq(md_cfg_len(md_cfg_get(clone, "g")), 1);
    cr_assert_eq(md_cfg_int(clone, "g.n", 0), 3);
    md_cfg_free(child);
    md_cfg_free(clone);
    md_cfg_free(c);
}

Test(config, include_directive) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = 1;\n@include \"base/schedule_1x.cfg\"\nz = 2;\n", DIR "inc.cfg", &err);
    cr_assert(c, "%s", err.msg);
    cr_assert_float_eq(md_cfg_float(c, "optimizer.lr", 0), 0.02, 1e-15);
    cr_assert_eq(md_cfg_line(md_cfg_get(c, "optimizer")), 1);
    cr_assert_eq(md_cfg_line(md_cfg_get(c, "z")), 3);
    md_cfg_free(c);
}

/* ---- schemas ---- */

static const md_key sgd_keys[] = {
    { "learning_rate", MD_KEY_FLOAT, "0.02", "base learning rate", false },
    { "momentum", MD_KEY_FLOAT, "0.9", NULL, false },
    { "nesterov", MD_KEY_BOOL, "false", NULL, false },
    { "params", MD_KEY_LIST, NULL, NULL, false },
    { "steps", MD_KEY_LIST, "[8, 11]", NULL, false },
    { "name", MD_KEY_STRING, "\"sgd\"", NULL, false },
    { "grad_clip", MD_KEY_GROUP, "None", NULL, false },
    { "paramwise_cfg", MD_KEY_GROUP, "{ norm_decay_mult = 0.0; }", NULL, false },
    { "iters", MD_KEY_INT, NULL, "iterations", true },
    { "extra", MD_KEY_ANY, NULL, NULL, false },
    { 0 },
};

static int check(const char *text, md_error *err) {
    md_cfg *c = md_cfg_parse(text, "opt.cfg", err);
    cr_assert(c, "%s", err->msg);
    int rc = md_cfg_check_keys(md_cfg_get(c, "optimizer"), sgd_keys, "SGD", err);
    md_cfg_free(c);
    return rc;
}

Test(config, check_keys_unknown_with_suggestion) {
    md_error err = { 0 };
    cr_assert_eq(check("optimizer = {\n  type = \"SGD\";\n  iters = 3;\n  lerning_rate = 0.1;\n};", &err), -1);
    cr_assert_str_eq(err.msg, "opt.cfg:4: unknown key 'lerning_rate' in SGD (did you mean 'learning_rate'?)");
    cr_assert_eq(err.code, MD_ERR_CONFIG);
    /* nothing close: the accepted keys are listed instead */
    cr_assert_eq(check("optimizer = { iters = 3; zzzzzz = 1; };", &err), -1);
    assert_has(err.msg, "unknown key 'zzzzzz' in SGD (accepted keys: learning_rate, momentum, nesterov");
    /* from --cfg-options: the origin says so */
    md_cfg *c = parse_ok("optimizer = { iters = 3; };");
    cr_assert_eq(md_cfg_apply_option(c, "optimizer.momentun=0.5", &err), 0);
    cr_assert_eq(md_cfg_check_keys(md_cfg_get(c, "optimizer"), sgd_keys, "SGD", &err), -1);
    cr_assert_str_eq(err.msg, "--cfg-options: unknown key 'momentun' in SGD (did you mean 'momentum'?)");
    md_cfg_free(c);
}

Test(config, check_keys_types_and_required) {
    md_error err = { 0 };
    cr_assert_eq(check("optimizer = { type = \"SGD\"; iters = 3; learning_rate = 1; momentum = 0.5; nesterov = true;\n"
                       "params = 3; steps = [1, 2]; name = \"x\"; grad_clip = \"None\"; extra = ({ a = 1; });\n"
                       "paramwise_cfg = {}; };",
                       &err),
                 0, "%s", err.msg);
    cr_assert_eq(check("optimizer = { iters = 3;\nnesterov = 1; };", &err), -1);
    cr_assert_str_eq(err.msg, "opt.cfg:2: key 'nesterov' in SGD: expected a bool, got int");
    cr_assert_eq(check("optimizer = { iters = 3.5; };", &err), -1);
    assert_has(err.msg, "key 'iters' in SGD: expected an int, got float");
    cr_assert_eq(check("optimizer = { iters = 3; params = { a = 1; }; };", &err), -1);
    assert_has(err.msg, "expected a list, got group");
    cr_assert_eq(check("optimizer = { iters = 1; learning_rate = \"0.1\"; };", &err), -1);
    assert_has(err.msg, "expected a number, got string");
    cr_assert_eq(check("\n\noptimizer = { momentum = 0.5; };", &err), -1);
    cr_assert_str_eq(err.msg, "opt.cfg:3: missing required key 'iters' in SGD (iterations)");
    md_cfg *c = parse_ok("optimizer = 3;");
    cr_assert_eq(md_cfg_check_keys(md_cfg_get(c, "optimizer"), sgd_keys, "SGD", &err), -1);
    assert_has(err.msg, "expected a group, got int");
    md_cfg_free(c);
}

Test(config, fill_defaults) {
    md_cfg *c = parse_ok("optimizer = { iters = 3; momentum = 0.5; grad_clip = { max_norm = 35; }; };");
    md_cfg *o = md_cfg_get_mut(c, "optimizer");
    md_error err = { 0 };
    cr_assert_eq(md_cfg_fill_defaults(o, sgd_keys, &err), 0, "%s", err.msg);
    cr_assert_float_eq(md_cfg_float(o, "learning_rate", 0), 0.02, 1e-15);
    cr_assert_float_eq(md_cfg_float(o, "momentum", 0), 0.5, 1e-15); /* present: kept */
    cr_assert_eq(md_cfg_kind(md_cfg_get(o, "nesterov")), MD_CFG_BOOL);
    cr_assert_eq(md_cfg_len(md_cfg_get(o, "steps")), 2);
    cr_assert_eq(md_cfg_int(o, "steps.1", 0), 11);
    cr_assert_str_eq(md_cfg_str(o, "name", ""), "sgd");
    cr_assert_eq(md_cfg_int(o, "grad_clip.max_norm", 0), 35);
    cr_assert_float_eq(md_cfg_float(o, "paramwise_cfg.norm_decay_mult", 1), 0.0, 0);
    cr_assert_not(md_cfg_has(o, "params"));  /* no default */
    cr_assert_null(md_cfg_file(md_cfg_get(o, "learning_rate")));
    cr_assert_eq(md_cfg_check_keys(o, sgd_keys, "SGD", &err), 0, "%s", err.msg);
    /* None default */
    md_cfg *empty = md_cfg_new_group();
    md_cfg_fill_defaults(empty, sgd_keys, &err);
    cr_assert_eq(md_cfg_kind(md_cfg_get(empty, "grad_clip")), MD_CFG_NONE);
    md_cfg_free(empty);
    static const md_key bad[] = { { "x", MD_KEY_INT, "[1, 2.0]", NULL, false }, { 0 } };
    cr_assert_eq(md_cfg_fill_defaults(o, bad, &err), -1);
    assert_has(err.msg, "default of key 'x'");
    md_cfg_free(c);
}

Test(config, suggest) {
    const char *keys[] = { "learning_rate", "momentum", "lr", "weight_decay", "type" };
    cr_assert_str_eq(md_suggest("lerning_rate", keys, 5), "learning_rate");
    cr_assert_str_eq(md_suggest("weight_decya", keys, 5), "weight_decay");
    cr_assert_str_eq(md_suggest("LR", keys, 5), "lr");
    cr_assert_str_eq(md_suggest("tpye", keys, 5), "type");
    cr_assert_str_eq(md_suggest("momentun", keys, 5), "momentum");
    cr_assert_null(md_suggest("depth", keys, 5));
    cr_assert_null(md_suggest("x", keys, 5));   /* a one-letter word is not "close" to "lr" */
    cr_assert_null(md_suggest("abc", keys, 0));
}

/* ---- the schema fills the struct (md_cfg_read_struct) ---- */

typedef struct schema_obj {
    int n;
    int64_t big;
    double x;
    bool flag;
    const char *name;
    const md_cfg *group;
    int mode;
} schema_obj;

static const md_key schema_keys[] = {
    { "n", MD_KEY_INT, "3", "a count", false, MD_AT(schema_obj, n), .min = "1", .max = "8" },
    { "big", MD_KEY_INT, "-7", NULL, false, MD_AT(schema_obj, big) },
    { "x", MD_KEY_FLOAT, "0.5", NULL, false, MD_AT(schema_obj, x), .min = "0.0" },
    { "flag", MD_KEY_BOOL, "true", NULL, false, MD_AT(schema_obj, flag) },
    { "name", MD_KEY_STRING, NULL, NULL, false, MD_AT(schema_obj, name) },
    { "group", MD_KEY_ANY, "None", NULL, false, MD_AT(schema_obj, group) },
    { "mode", MD_KEY_STRING, "\"linear\"", NULL, false, MD_CHOICE_AT(schema_obj, mode, "log|linear|square") },
    { 0 } };

Test(config, schema_fills_the_struct) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = { n = 8; x = 2; name = \"hi\"; group = { k = 1; }; mode = \"square\"; };\n"
                             "b = { };\n", "schema.cfg", &err);
    cr_assert_not_null(c, "%s", err.msg);
    schema_obj o = { .name = "untouched" };
    cr_assert_eq(md_cfg_read_struct(md_cfg_get(c, "a"), schema_keys, &o, "Thing", &err), 0, "%s", err.msg);
    cr_assert_eq(o.n, 8);
    cr_assert_eq(o.big, -7);              /* absent: the default */
    cr_assert_float_eq(o.x, 2.0, 0);       /* an int where a float goes */
    cr_assert(o.flag);
    cr_assert_str_eq(o.name, "hi");
    cr_assert_eq(md_cfg_int(o.group, "k", 0), 1);
    cr_assert_eq(o.mode, 2);
    /* every default; a string without one is NULL, None is a NULL group */
    schema_obj d = { .name = "untouched", .group = (const md_cfg *)&d };
    cr_assert_eq(md_cfg_read_struct(md_cfg_get(c, "b"), schema_keys, &d, "Thing", &err), 0, "%s", err.msg);
    cr_assert_eq(d.n, 3);
    cr_assert_float_eq(d.x, 0.5, 0);
    cr_assert_eq(d.mode, 1);
    cr_assert_null(d.name);
    cr_assert_null(d.group);
    md_cfg_free(c);
}

Test(config, schema_bounds_and_choices_name_the_line) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = { n = 9; };\nb = { x = -1.5; };\nc = { mode = \"cubic\"; };\nd = { n = 2.5; };\n",
                             "schema.cfg", &err);
    cr_assert_not_null(c, "%s", err.msg);
    schema_obj o;
    cr_assert_neq(md_cfg_read_struct(md_cfg_get(c, "a"), schema_keys, &o, "Thing", &err), 0);
    cr_assert_str_eq(err.msg, "schema.cfg:1: n in Thing is 9; it must be at most 8");
    cr_assert_eq(err.code, MD_ERR_CONFIG);
    cr_assert_neq(md_cfg_read_struct(md_cfg_get(c, "b"), schema_keys, &o, "Thing", &err), 0);
    cr_assert_str_eq(err.msg, "schema.cfg:2: x in Thing is -1.5; it must be at least 0.0");
    cr_assert_neq(md_cfg_read_struct(md_cfg_get(c, "c"), schema_keys, &o, "Thing", &err), 0);
    cr_assert_str_eq(err.msg, "schema.cfg:3: mode in Thing is \"cubic\"; accepted: log|linear|square");
    cr_assert_neq(md_cfg_read_struct(md_cfg_get(c, "d"), schema_keys, &o, "Thing", &err), 0);
    cr_assert(strstr(err.msg, "schema.cfg:4: n in Thing: expected an int"), "%s", err.msg);
    /* bounds and choices only (what md_build_from_cfg checks for every class) */
    cr_assert_neq(md_cfg_read_struct(md_cfg_get(c, "a"), schema_keys, NULL, "Thing", &err), 0);
    cr_assert_eq(md_cfg_read_struct(md_cfg_get(c, "d"), schema_keys, NULL, "Thing", &err), 0, "%s", err.msg);
    md_cfg_free(c);
}

/* Integers beyond 32 bits keep their value (the libconfig reader alone
 * truncates them silently), whatever strings and comments hold; beyond 64
 * bits they are an error naming the line. */
Test(config, wide_integers_keep_their_value) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse("a = 9999999999;  # 99999999999999999999 in a comment\n"
                             "s = \"99999999999999999999\";\n"
                             "l = (3000000000, -2147483648, -2147483649, 2147483647, 12L, 1.5e10, 0x10);\n",
                             "wide.cfg", &err);
    cr_assert(c, "%s", err.msg);
    cr_assert_eq(md_cfg_int(c, "a", 0), 9999999999LL);
    cr_assert_str_eq(md_cfg_str(c, "s", ""), "99999999999999999999");
    const md_cfg *l = md_cfg_get(c, "l");
    const int64_t want[] = { 3000000000LL, -2147483648LL, -2147483649LL, 2147483647LL, 12 };
    for (int i = 0; i < 5; i++) cr_assert_eq(md_cfg_as_int(md_cfg_at(l, i)), want[i], "item %d", i);
    cr_assert_float_eq(md_cfg_as_float(md_cfg_at(l, 5)), 1.5e10, 1);
    cr_assert_eq(md_cfg_as_int(md_cfg_at(l, 6)), 16);
    md_cfg_free(c);
    cr_assert_null(md_cfg_parse("x = 1;\nmax_epochs = 99999999999999999999;\n", "big.cfg", &err));
    cr_assert_str_eq(err.msg, "big.cfg:2: the integer 99999999999999999999 is out of range (64 bits at most)");
}
