/* ResNet-50 (the ResNet backbone plugin, built through the registry; all four
 * stage outputs, no fc head) against bench/peer_resnet.py:
 *   resnet50_train_step  forward + backward of sum(all outputs) on 2x3x512x512,
 *                        BN in training mode, then one SGD step (momentum 0.9,
 *                        weight decay 1e-4)
 *   resnet50_infer       forward on 1x3x800x1216, eval mode, no grad
 *   resnet50_train_step_bf16  the train step with conv inputs in bf16 (mixed
 *                        precision, amp.h; `kernel=` names the CPU's bf16 kernel;
 *                        on a GPU cuDNN and cuBLAS with bf16 operands)
 *   resnet50_train_step_fp16  the same in fp16 (a GPU only; skipped on the CPU)
 * Each benchmark runs in its own child process so that its peak resident
 * memory (ru_maxrss) is its own. Prints
 *   bench <name> ours_ms=<median> ours_mb=<peak RSS> gflops=<achieved>
 * Repetitions: $MMDET_BENCH_REPS (default 3, after one warm-up); threads:
 * $MMDET_NUM_THREADS. Run from the repository root (loads plugins/backbones and
 * plugins/optimizers).
 * With MMDET_BENCH_DEVICE=cuda the model and input live on the GPU, the
 * names get a _cuda suffix and each step ends with a device synchronisation
 * (ours_mb is then the device step arena's peak plus the parameters and
 * optimizer state, to compare with torch.cuda.max_memory_allocated). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "benchlib.h"

static const char *CFG =
    "backbone = { type = \"ResNet\"; depth = 50; num_stages = 4; out_indices = [0, 1, 2, 3];\n"
    "             frozen_stages = -1; norm_eval = false; style = \"pytorch\"; };\n"
    "optimizer = { type = \"SGD\"; lr = 0.001; momentum = 0.9; weight_decay = 0.0001; };\n";

static int fail(const char *what, const char *msg) {
    fprintf(stderr, "bench_resnet: %s: %s\n", what, msg);
    return 1;
}

/* ResNet-50 forward multiply-adds per pixel of input at 224x224 is 4.09 G
 * (conv + fc); without the fc it is 4.09 G - 2 M. Scaled by pixel count. */
static double fwd_flops(int64_t n, int64_t h, int64_t w) { return 2.0 * 4.087e9 * n * (double)(h * w) / (224.0 * 224.0); }

/* amp: NULL (f32), "bf16" or "fp16" (mixed precision, amp.h) */
static int run(bool train, const char *amp, int reps) {
    md_error err = { 0 };
    const char *devname = getenv("MMDET_BENCH_DEVICE");
    md_device dev = MD_DEVICE_CPU;
    if (devname && *devname && md_device_parse(devname, &dev, &err) != 0) return fail("device", err.msg);
    bool gpu = dev.type != MD_CPU;
    if (amp && !gpu && (!strcmp(amp, "fp16") || !md_amp_cpu_kernel())) {   /* CPUs: bf16 with a bf16 kernel only */
        printf("bench resnet50_train_step_%s skipped=%s\n", amp,
               !strcmp(amp, "fp16") ? "no fp16 kernels on CPUs" : "no bf16 kernel on this CPU");
        return 0;
    }
    md_ctx *ctx = md_ctx_new(&err);
    if (!ctx) return fail("context", err.msg);
    md_log_set_quiet(ctx, true);
    md_ctx_seed(ctx, 1);
    if (md_plugin_load_file(ctx, "plugins/backbones/resnet.so", &err) != 0 ||
        md_plugin_load_dir(ctx, "plugins/optimizers", &err) != 0)
        return fail("plugin", err.msg);
    md_cfg *cfg = md_cfg_parse(CFG, "bench_resnet.cfg", &err);
    if (!cfg) return fail("config", err.msg);
    md_module *m = md_build_backbone(ctx, md_cfg_get(cfg, "backbone"), &err);
    if (!m) return fail("build", err.msg);
    if (gpu && md_module_to(ctx, m, dev, &err) != 0) return fail("device", err.msg);
    md_optimizer *opt = NULL;
    if (train) {
        opt = md_optimizer_build(ctx, m, md_cfg_get(cfg, "optimizer"), &err);
        if (!opt) return fail("optimizer", err.msg);
    }
    md_module_train(m, train);
    if (amp && md_amp_enable(ctx, amp, false, dev, "bench", &err) != 0) {   /* conv inputs in bf16 / fp16 (amp.h) */
        printf("bench resnet50_train_step_%s%s skipped=\"%s\"\n", amp, gpu ? "_cuda" : "", err.msg);
        return 0;
    }
    const int64_t N = train ? 2 : 1, H = train ? 512 : 800, W = train ? 512 : 1216;
    md_tensor *img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(N, 3, H, W), &err);
    if (!img) return fail("input", err.msg);
    md_rng r;
    md_rng_seed(&r, 1);
    md_tensor_normal_(img, &r, 0, 1);
    if (gpu && md_tensor_move_(ctx, img, dev, &err) != 0) return fail("input", err.msg);
    double *t = malloc(sizeof(double) * (size_t)reps), *ct = malloc(sizeof(double) * (size_t)reps);
    md_grad_set_enabled(ctx, train);
    for (int i = -1; i < reps; i++) {   /* one warm-up */
        md_ctx_step_reset(ctx);
        double t0 = now_ms(), c0 = cpu_ms();
        md_tensor *outs[MD_MAX_LEVELS];
        int n = md_backbone_forward(ctx, m, img, outs, MD_MAX_LEVELS);
        if (n <= 0) return fail("forward", md_ctx_error(ctx)->msg);
        if (train) {
            md_optimizer_zero_grad(opt);
            md_tensor *loss = NULL;
            for (int k = 0; k < n; k++) {
                md_tensor *s = md_sum(ctx, outs[k], MD_DIM_ALL, false);
                loss = loss ? md_add(ctx, loss, s) : s;
            }
            if (!loss || md_backward(ctx, loss, &err) != 0) return fail("backward", err.msg);
            if (md_optimizer_step(opt, &err) != 0) return fail("step", err.msg);
        }
        if (gpu && md_device_synchronize(dev, &err) != 0) return fail("synchronize", err.msg);
        if (i >= 0) t[i] = now_ms() - t0, ct[i] = cpu_ms() - c0;
        if (getenv("MMDET_BENCH_VERBOSE")) fprintf(stderr, "rep %d: %.1f ms\n", i, now_ms() - t0);
    }
    double ms = median(t, reps), fl = fwd_flops(N, H, W) * (train ? 3.0 : 1.0);
    double mb = peak_mb();
    if (gpu) {   /* device memory: step arena peak + parameters, gradients and optimizer state */
        int64_t params = md_module_num_params(m, false);
        mb = (double)md_ctx_device_arena_peak(ctx, dev) / 1048576.0 +
             (double)params * 4.0 * (train ? 3.0 : 1.0) / 1048576.0;
    }
    /* CPU time of all threads per step: what the step costs, less swayed than
     * the wall clock by other jobs on a shared machine */
    printf("bench resnet50_%s%s%s ours_ms=%.1f ours_cpu_ms=%.1f ours_mb=%.0f gflops=%.1f batch=%lldx3x%lldx%lld "
           "threads=%d%s%s%s\n",
           train ? "train_step" : "infer", amp ? (!strcmp(amp, "fp16") ? "_fp16" : "_bf16") : "", gpu ? "_cuda" : "", ms, median(ct, reps), mb, fl / ms / 1e6, (long long)N,
           (long long)H,
           (long long)W, md_ctx_threads(ctx), gpu ? " device=" : "", gpu ? md_device_describe(dev) : "",
           !amp || gpu ? "" : strstr(md_amp_cpu_kernel(), "emulated") ? " kernel=emulated"
                      : strstr(md_amp_cpu_kernel(), "converted") ? " kernel=avx512cvt" : " kernel=native");
    fflush(stdout);
    free(t);
    free(ct);
    md_tensor_free(img);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    int reps = getenv("MMDET_BENCH_REPS") ? atoi(getenv("MMDET_BENCH_REPS")) : 3;
    if (reps < 1) reps = 1;
    /* "train", "infer", "train_bf16" or "train_fp16": one benchmark, in-process */
    const char *only = argc > 1 ? argv[1] : NULL;
    if (only) {
        const char *amp = !strcmp(only, "train_bf16") ? "bf16" : !strcmp(only, "train_fp16") ? "fp16" : NULL;
        return run(!strncmp(only, "train", 5), amp, reps);
    }
    int rc = 0;
    static const char *const amps[4] = { NULL, NULL, "bf16", "fp16" };
    for (int b = 0; b < 4; b++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return fail("fork", "failed");
        if (pid == 0) _exit(run(b != 1, amps[b], reps));
        int st = 0;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = 1;
    }
    return rc;
}
