/* The flags every tool shares and the setup they do first (tool.h). */
#include <criterion/criterion.h>
#include <string.h>
#include "testlib.h"
#include "mmdet/mmdet.h"

static int parse_all(md_tool_opts *o, int argc, char **argv, int *rest, md_error *err) {
    int n_rest = 0;
    for (int i = 1; i < argc; i++) {
        int k = md_tool_opts_parse(o, argc, argv, &i, err);
        if (k < 0) return -1;
        if (!k) rest[n_rest++] = i;
    }
    return n_rest;
}

Test(tool_opts, shared_flags_are_consumed_and_the_rest_left) {
    char *argv[] = { "tool", "cfg.cfg", "--plugin-dir", "a", "--cfg-options", "x=1", "y.z=[1, 2]", "--exact",
                     "--plugin-dir", "b", "--no-default-plugins", "--device", "cuda:1", "ckpt", "--skip-bad-plugins",
                     "--cfg-options", "w=2" };
    int argc = (int)(sizeof argv / sizeof *argv), rest[16];
    md_tool_opts o;
    md_error err = { 0 };
    cr_assert_eq(md_tool_opts_init(&o, argc, &err), 0);
    int n = parse_all(&o, argc, argv, rest, &err);
    cr_assert_eq(n, 3, "%s", err.msg);
    cr_assert_str_eq(argv[rest[0]], "cfg.cfg");
    cr_assert_str_eq(argv[rest[1]], "--exact");   /* the tool's own flag */
    cr_assert_str_eq(argv[rest[2]], "ckpt");
    cr_assert_eq(o.n_plugin_dirs, 2);
    cr_assert_str_eq(o.plugin_dirs[0], "a");
    cr_assert_str_eq(o.plugin_dirs[1], "b");
    cr_assert_eq(o.n_cfg_options, 3);   /* nargs='+', and a second --cfg-options appends */
    cr_assert_str_eq(o.cfg_options[1], "y.z=[1, 2]");
    cr_assert_str_eq(o.cfg_options[2], "w=2");
    cr_assert(o.no_default_plugins && o.skip_bad_plugins);
    cr_assert_str_eq(o.device, "cuda:1");
    md_tool_opts_free(&o);
}

Test(tool_opts, a_flag_without_its_value_is_named) {
    const char *cases[][3] = { { "tool", "--plugin-dir", NULL }, { "tool", "--device", NULL },
                               { "tool", "--cfg-options", "--exact" } };
    for (int c = 0; c < 3; c++) {
        char *argv[3] = { (char *)cases[c][0], (char *)cases[c][1], (char *)cases[c][2] };
        int argc = cases[c][2] ? 3 : 2, rest[4];
        md_tool_opts o;
        md_error err = { 0 };
        cr_assert_eq(md_tool_opts_init(&o, argc, &err), 0);
        cr_assert_eq(parse_all(&o, argc, argv, rest, &err), -1, "%s accepted without a value", cases[c][1]);
        cr_assert(strstr(err.msg, cases[c][1]), "%s", err.msg);
        md_tool_opts_free(&o);
    }
}

Test(tool_opts, setup_loads_applies_the_options_the_plugins_and_the_device) {
    char *argv[] = { "tool", "--plugin-dir", "plugins", "--no-default-plugins", "--cfg-options",
                     "model.bbox_head.num_classes=3", "log_level=WARNING", "--device", "cpu" };
    int argc = (int)(sizeof argv / sizeof *argv), rest[4];
    md_tool_opts o;
    md_error err = { 0 };
    cr_assert_eq(md_tool_opts_init(&o, argc, &err), 0);
    cr_assert_eq(parse_all(&o, argc, argv, rest, &err), 0);
    md_ctx *ctx = md_ctx_new(&err);
    cr_assert(ctx);
    md_cfg *cfg = md_tool_setup(ctx, "tests/configs/retinanet_tiny.cfg", &o, &err);
    cr_assert(cfg, "%s", err.msg);
    cr_assert_eq(md_cfg_int(cfg, "model.bbox_head.num_classes", 0), 3);
    cr_assert_str_eq(md_cfg_str(cfg, "device", ""), "cpu");
    cr_assert_gt(md_plugin_count(ctx), 5, "the plugin set was not loaded");
    md_cfg_free(cfg);
    md_ctx_free(ctx);

    /* a bad option names itself; nothing leaks on the way out */
    o.cfg_options[0] = "model.bbox_head.num_classes";
    ctx = md_ctx_new(&err);
    cr_assert_null(md_tool_setup(ctx, "tests/configs/retinanet_tiny.cfg", &o, &err));
    cr_assert(strstr(err.msg, "model.bbox_head.num_classes"), "%s", err.msg);
    md_ctx_free(ctx);
    md_tool_opts_free(&o);
}
