/* The interface of the toy "models" entries the registry tests build. */
#ifndef TOY_H
#define TOY_H
#include <stdint.h>

typedef struct toy_model toy_model;
typedef struct toy_iface {
    int64_t (*forward)(const toy_model *m, int64_t x);
    void (*destroy)(toy_model *m);
} toy_iface;

struct toy_model {
    const toy_iface *iface;
    const char *type;
    int64_t in_features, out_features;
    double init_std;
    int bias;
    const char *act;          /* points into the build config (kept by the context) */
    toy_model *child;
};
#endif
