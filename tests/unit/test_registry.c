/* Registry: built-ins, lookup, the unknown-type message, build_from_cfg. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "../plugins/toy.h"

/* A class registered outside any plugin load: a built-in. */
static int builtin_builds;
static void *builtin_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx; (void)err;
    builtin_builds++;
    static int64_t value;
    value = md_cfg_int(cfg, "value", -1);
    return &value;
}
static const md_key builtin_keys[] = { { "value", MD_KEY_INT, "5", "a number", false }, { 0 } };
static const md_class builtin_thing = { .name = "BuiltinThing", .keys = builtin_keys, .build = builtin_build };
MD_REGISTER("models", builtin_thing)

static md_ctx *new_ctx(void) {
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    cr_assert_not_null(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    return ctx;
}

static md_ctx *ctx_with_toys(void) {
    md_ctx *ctx = new_ctx();
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_dir(ctx, "tests/plugins", &err), 0, "%s", err.msg);
    return ctx;
}

static md_cfg *parse(const char *text) {
    md_error err = { 0 };
    md_cfg *c = md_cfg_parse(text, "exp.cfg", &err);
    cr_assert_not_null(c, "%s", err.msg);
    return c;
}

static bool ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

Test(registry, builtin_in_every_context) {
    md_ctx *a = new_ctx(), *b = new_ctx();
    md_error err = { 0 };
    cr_assert_eq(md_registry_find(a, "models", "BuiltinThing", &err), &builtin_thing);
    cr_assert_eq(md_registry_find(b, "models", "BuiltinThing", &err), &builtin_thing);
    cr_assert_str_eq(md_registry_origin(a, "models", "BuiltinThing"), "<builtin>");
    md_cfg *cfg = parse("thing = { type = \"BuiltinThing\"; };");
    int64_t *v = md_build_from_cfg(a, "models", md_cfg_get(cfg, "thing"), NULL, &err);
    cr_assert_not_null(v, "%s", err.msg);
    cr_assert_eq(*v, 5, "schema default filled");
    md_cfg_free(cfg);
    md_ctx_free(a);
    md_ctx_free(b);
}

Test(registry, plugins_commit_into_each_context_once) {
    md_ctx *a = ctx_with_toys();
    md_error err = { 0 };
    const md_class *lin = md_registry_find(a, "models", "ToyLinear", &err);
    cr_assert_not_null(lin, "%s", err.msg);
    cr_assert(ends_with(md_registry_origin(a, "models", "ToyLinear"), "/tests/plugins/toy_models.so"),
              "origin %s", md_registry_origin(a, "models", "ToyLinear"));
    cr_assert(ends_with(md_registry_origin(a, "hooks", "ToyHook"), "/tests/plugins/toy_hook.so"));
    int n = md_registry_entry_count(a, "models");
    cr_assert_eq(n, 3, "BuiltinThing, ToyLinear, ToyContainer; got %d", n);
    /* Loading the same directory again is a no-op, not a duplicate. */
    cr_assert_eq(md_plugin_load_dir(a, "tests/plugins", &err), 0, "%s", err.msg);
    cr_assert_eq(md_registry_entry_count(a, "models"), n);
    cr_assert_eq(md_plugin_dir_count(a), 1);
    cr_assert_str_eq(md_plugin_dir(a, 0), "tests/plugins");
    /* A second context gets the same classes (constructors ran once). */
    md_ctx *b = ctx_with_toys();
    cr_assert_eq(md_registry_find(b, "models", "ToyLinear", &err), lin);
    cr_assert_eq(md_registry_entry_count(b, "models"), n);
    /* A context that loaded nothing has only the built-ins. */
    md_ctx *c = new_ctx();
    cr_assert_null(md_registry_find(c, "models", "ToyLinear", NULL));
    cr_assert_eq(md_registry_entry_count(c, "models"), 1);
    md_ctx_free(a);
    md_ctx_free(b);
    md_ctx_free(c);
}

Test(registry, enumeration) {
    md_ctx *ctx = ctx_with_toys();
    bool models = false, hooks = false;
    for (int i = 0; i < md_registry_count(ctx); i++) {
        models |= !strcmp(md_registry_name(ctx, i), "models");
        hooks |= !strcmp(md_registry_name(ctx, i), "hooks");
    }
    cr_assert(models && hooks);
    cr_assert_null(md_registry_name(ctx, md_registry_count(ctx)));
    const char *names[3] = { 0 };
    for (int i = 0; i < 3; i++) names[i] = md_registry_entry(ctx, "models", i)->name;
    cr_assert_str_eq(names[0], "BuiltinThing");
    cr_assert_str_eq(names[1], "ToyLinear");
    cr_assert_str_eq(names[2], "ToyContainer");
    cr_assert_null(md_registry_entry(ctx, "models", 3));
    cr_assert_eq(md_registry_entry_count(ctx, "no_such_registry"), 0);
    md_ctx_free(ctx);
}

Test(registry, unknown_type_lists_suggests_and_names_dirs) {
    md_ctx *ctx = ctx_with_toys();
    md_error err = { 0 };
    cr_assert_null(md_registry_find(ctx, "models", "ToyLinaer", &err));
    cr_assert_eq(err.code, MD_ERR_REGISTRY);
    cr_assert(strstr(err.msg, "'ToyLinaer' is not in the models registry"), "%s", err.msg);
    cr_assert(strstr(err.msg, "did you mean 'ToyLinear'?"), "%s", err.msg);
    cr_assert(strstr(err.msg, "BuiltinThing, ToyLinear, ToyContainer"), "%s", err.msg);
    cr_assert(strstr(err.msg, "Plugin directories searched: tests/plugins."), "%s", err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "one line: %s", err.msg);

    /* Nothing close: no suggestion, still the list. */
    md_error_clear(&err);
    cr_assert_null(md_registry_find(ctx, "models", "Zebra", &err));
    cr_assert_null(strstr(err.msg, "did you mean"), "%s", err.msg);
    cr_assert(strstr(err.msg, "Registered: BuiltinThing"), "%s", err.msg);

    /* An empty registry and a misspelt registry. */
    md_error_clear(&err);
    cr_assert_null(md_registry_find(ctx, "backbones", "ResNet", &err));
    cr_assert(strstr(err.msg, "'ResNet' is not in the backbones registry; the registry is empty"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(md_registry_find(ctx, "modles", "ToyLinear", &err));
    cr_assert(strstr(err.msg, "no such registry; did you mean the 'models' registry?"), "%s", err.msg);
    md_ctx_free(ctx);

    md_ctx *bare = new_ctx();
    md_error_clear(&err);
    cr_assert_null(md_registry_find(bare, "models", "ToyLinear", &err));
    cr_assert(strstr(err.msg, "No plugin directories were searched"), "%s", err.msg);
    md_ctx_free(bare);
}

Test(registry, build_default_args_fill_only_missing_keys) {
    md_ctx *ctx = ctx_with_toys();
    md_error err = { 0 };
    md_cfg *cfg = parse("m = { type = \"ToyLinear\"; in_features = 3; };\n"
                        "d = { type = \"ToyContainer\"; in_features = 100; out_features = 5; bias = false; };");
    toy_model *m = md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "m"), md_cfg_get(cfg, "d"), &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_str_eq(m->type, "ToyLinear", "cfg's type wins over default_args'");
    cr_assert_eq(m->in_features, 3, "cfg's value wins");
    cr_assert_eq(m->out_features, 5, "missing key filled from default_args");
    cr_assert_eq(m->bias, 0, "default_args win over schema defaults");
    cr_assert_float_eq(m->init_std, 0.01, 1e-12, "schema default filled");
    cr_assert_str_eq(m->act, "relu");
    cr_assert_eq(m->iface->forward(m, 2), 10);
    /* The caller's config is untouched. */
    cr_assert_not(md_cfg_has(cfg, "m.out_features"));
    cr_assert_not(md_cfg_has(cfg, "m.init_std"));
    m->iface->destroy(m);

    /* `type` from default_args alone. */
    md_cfg *c2 = parse("m = { in_features = 2; out_features = 3; };\nd = { type = \"ToyLinear\"; };");
    m = md_build_from_cfg(ctx, "models", md_cfg_get(c2, "m"), md_cfg_get(c2, "d"), &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_str_eq(m->type, "ToyLinear");
    cr_assert_eq(m->bias, 1);
    m->iface->destroy(m);

    /* No type anywhere. */
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(c2, "m"), NULL, &err));
    cr_assert(strstr(err.msg, "m: `cfg` or `default_args` must contain the key \"type\""), "%s", err.msg);
    cr_assert(strstr(err.msg, "exp.cfg:1"), "%s", err.msg);
    md_cfg_free(cfg);
    md_cfg_free(c2);
    md_ctx_free(ctx);
}

Test(registry, build_error_wrapped_with_config_path) {
    md_ctx *ctx = ctx_with_toys();
    md_error err = { 0 };
    md_cfg *cfg = parse("model = {\n  type = \"ToyContainer\";\n  child = { type = \"ToyLinear\"; in_features = -3; out_features = 1; };\n};");
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "model"), NULL, &err));
    cr_assert_str_eq(err.msg, "model.child: ToyLinear: in_features must be positive, got -3");
    cr_assert_eq(err.code, MD_ERR_CONFIG);
    /* The same leaf built directly. */
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "model.child"), NULL, &err));
    cr_assert_str_eq(err.msg, "model.child: ToyLinear: in_features must be positive, got -3");
    /* Nested container: the child's path goes through the parent's clone. */
    md_cfg *deep = parse("a = { b = { type = \"ToyContainer\"; child = { type = \"ToyContainer\";\n"
                         "  child = { type = \"ToyLinear\"; in_features = 0; }; }; }; };");
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(deep, "a.b"), NULL, &err));
    cr_assert_str_eq(err.msg, "a.b.child.child: ToyLinear: in_features must be positive, got 0");
    md_cfg_free(deep);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
}

Test(registry, build_schema_and_type_errors_name_path_and_line) {
    md_ctx *ctx = ctx_with_toys();
    md_error err = { 0 };
    md_cfg *cfg = parse("model = {\n  type = \"ToyContainer\";\n  child = {\n    type = \"ToyLinear\";\n"
                        "    in_feature = 3;\n  };\n};");
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "model"), NULL, &err));
    cr_assert(!strncmp(err.msg, "model.child: ", 13), "%s", err.msg);
    cr_assert(strstr(err.msg, "exp.cfg:5"), "%s", err.msg);
    cr_assert(strstr(err.msg, "in_feature"), "%s", err.msg);
    cr_assert(strstr(err.msg, "did you mean 'in_features'"), "%s", err.msg);
    md_cfg_free(cfg);

    cfg = parse("model = {\n  type = \"ToyContainer\";\n  child = {\n    type = \"ToyLinearr\";\n  };\n};");
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "model"), NULL, &err));
    cr_assert(!strncmp(err.msg, "model.child (exp.cfg:4): 'ToyLinearr' is not in the models registry", 66),
              "%s", err.msg);
    cr_assert(strstr(err.msg, "did you mean 'ToyLinear'?"), "%s", err.msg);
    md_cfg_free(cfg);

    cfg = parse("model = { type = 3; };\nx = 5;");
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "model"), NULL, &err));
    cr_assert(strstr(err.msg, "model.type: expected a string"), "%s", err.msg);
    md_error_clear(&err);
    cr_assert_null(md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "x"), NULL, &err));
    cr_assert(strstr(err.msg, "x: expected a group with a `type`"), "%s", err.msg);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
}

Test(registry, built_strings_outlive_the_callers_config) {
    md_ctx *ctx = ctx_with_toys();
    md_error err = { 0 };
    md_cfg *cfg = parse("m = { type = \"ToyLinear\"; in_features = 1; out_features = 1; act = \"gelu\"; };");
    toy_model *m = md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "m"), NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    md_cfg_free(cfg);   /* the object points into the context's clone, not here */
    cr_assert_str_eq(m->act, "gelu");
    m->iface->destroy(m);
    md_ctx_free(ctx);
}

Test(registry, nested_build_gets_parent_defaults) {
    md_ctx *ctx = ctx_with_toys();
    md_error err = { 0 };
    md_cfg *cfg = parse("a = { type = \"ToyContainer\"; child = { type = \"ToyLinear\"; in_features = 2; }; };\n"
                        "b = { type = \"ToyContainer\"; out_features = 9; child = { type = \"ToyLinear\"; in_features = 2; }; };\n"
                        "c = { type = \"ToyContainer\"; out_features = 9; child = { type = \"ToyLinear\"; in_features = 2; out_features = 1; }; };");
    int64_t want[3] = { 7, 9, 1 };
    const char *keys[3] = { "a", "b", "c" };
    for (int i = 0; i < 3; i++) {
        toy_model *m = md_build_from_cfg(ctx, "models", md_cfg_get(cfg, keys[i]), NULL, &err);
        cr_assert_not_null(m, "%s", err.msg);
        cr_assert_eq(m->child->out_features, want[i], "%s", keys[i]);
        cr_assert_eq(m->iface->forward(m, 1), want[i] + 1 + 1000);
        m->iface->destroy(m);
    }
    md_cfg_free(cfg);
    md_ctx_free(ctx);
}
