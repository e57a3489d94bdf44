"""Golden fixtures for the basic ops (element-wise, reductions, shapes,
indexing, sorting): inputs, outputs and input gradients from PyTorch.

Each case <name> stores <name>/in0.. (inputs), <name>/out (output, or
<name>/out0.. for several), <name>/g (a fixed random upstream gradient) and
<name>/grad0.. (d(sum(g * out))/d(input) for the f32 inputs). The C tests
(tests/unit/test_ops_*.c) rebuild each case with the same op and arguments.

Run from tests/golden: /usr/bin/python3 ops_basic_golden.py
"""
import numpy as np
import torch

from common import save

torch.manual_seed(0)
rng = np.random.RandomState(0)


def randn(*shape, away=None, lo=None):
    """Random f32; `away` keeps values at least 0.05 from each listed kink,
    `lo` keeps them above a bound (for log/sqrt/div)."""
    x = np.asarray(rng.randn(*shape), dtype=np.float32)
    if lo is not None:
        x = np.asarray(np.abs(x) + lo, dtype=np.float32)
    for k in away or []:
        close = np.abs(x - k) < 0.05
        x[close] = k + np.where(x[close] >= k, 0.1, -0.1)
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def distinct(*shape):
    """f32 values with no ties anywhere (a shuffled grid): safe for max/sort."""
    n = int(np.prod(shape)) if shape else 1
    v = (rng.permutation(n).astype(np.float32) - n / 2) * 0.37
    return torch.from_numpy(v.reshape(shape))


def run(out_dict, name, fn, inputs, grad=True):
    ins = [x.clone().requires_grad_(grad and x.dtype == torch.float32) for x in inputs]
    for i, x in enumerate(ins):
        out_dict[f"{name}/in{i}"] = x
    out = fn(*ins)
    outs = out if isinstance(out, (tuple, list)) else [out]
    for k, o in enumerate(outs):
        out_dict[f"{name}/out" if len(outs) == 1 else f"{name}/out{k}"] = o
    diff = [o for o in outs if o.dtype == torch.float32 and o.requires_grad]
    if diff:
        gs = [torch.from_numpy(np.asarray(rng.randn(*o.shape), dtype=np.float32)) for o in diff]
        for k, gk in enumerate(gs):
            out_dict[f"{name}/g" if len(diff) == 1 else f"{name}/g{k}"] = gk
        torch.autograd.backward(diff, gs)
        for i, x in enumerate(ins):
            if x.requires_grad:
                out_dict[f"{name}/grad{i}"] = x.grad if x.grad is not None else torch.zeros_like(x)


# ------------------------------------------------------------ element-wise --
E = {}
bin_shapes = [("same", (3, 4), (3, 4)), ("row", (2, 3, 5), (5,)), ("outer", (4, 1), (1, 6)),
              ("mid", (2, 1, 3), (4, 1)), ("scalar", (3, 2), ()), ("empty", (0, 3), (3,)),
              ("odd", (7, 13), (7, 1))]
for op, f in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div)]:
    for tag, sa, sb in bin_shapes:
        b = randn(*sb, lo=0.5) * torch.from_numpy(np.asarray(np.where(rng.rand(*sb) < 0.5, -1, 1), dtype=np.float32)) \
            if op == "div" else randn(*sb)
        run(E, f"{op}_{tag}", f, [randn(*sa), b])
ia = torch.from_numpy(rng.randint(-50, 50, size=(3, 4)).astype(np.int64))
ib = torch.from_numpy(rng.randint(-50, 50, size=(4,)).astype(np.int64))
for op, f in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)]:
    run(E, f"{op}_i64", f, [ia, ib])
    run(E, f"{op}_i32", f, [ia.int(), ib.int()])
run(E, "add_mixed", torch.add, [randn(3, 4), ib])   # i64 promoted to f32

un_x = {"neg": randn(4, 5), "relu": randn(4, 5, away=[0]), "sigmoid": randn(4, 5) * 3,
        "exp": randn(4, 5), "log": randn(4, 5, lo=0.2), "sqrt": randn(4, 5, lo=0.2),
        "abs": randn(4, 5, away=[0]), "clamp": randn(4, 5, away=[-0.5, 0.7]),
        "pow": randn(4, 5, lo=0.2), "pow2": randn(4, 5), "add_scalar": randn(4, 5),
        "mul_scalar": randn(4, 5), "clamp_lo": randn(4, 5, away=[0.1])}
un_f = {"neg": torch.neg, "relu": torch.relu, "sigmoid": torch.sigmoid, "exp": torch.exp,
        "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs,
        "clamp": lambda x: torch.clamp(x, -0.5, 0.7), "pow": lambda x: torch.pow(x, 1.7),
        "pow2": lambda x: torch.pow(x, 2.0), "add_scalar": lambda x: x + 2.5,
        "mul_scalar": lambda x: x * -1.5, "clamp_lo": lambda x: torch.clamp(x, min=0.1)}
for k in un_x:
    run(E, f"un_{k}", un_f[k], [un_x[k]])
    run(E, f"un_{k}_empty", un_f[k], [torch.zeros(0, 3)])
run(E, "un_relu_odd", torch.relu, [randn(3, 7, 11, away=[0])])

# comparisons with ties (small integers as floats), broadcasting
ca = torch.from_numpy(rng.randint(-3, 4, size=(3, 5)).astype(np.float32))
cb = torch.from_numpy(rng.randint(-3, 4, size=(5,)).astype(np.float32))
for op, f in [("gt", torch.gt), ("ge", torch.ge), ("lt", torch.lt), ("le", torch.le),
              ("eq", torch.eq), ("ne", torch.ne)]:
    run(E, f"cmp_{op}", f, [ca, cb], grad=False)
    run(E, f"cmps_{op}", lambda x, f=f: f(x, 1.0), [ca], grad=False)
    run(E, f"cmp_{op}_i64", f, [ca.long(), cb.long()], grad=False)
ma = torch.from_numpy((rng.rand(4, 6) < 0.5).astype(np.uint8))
mb = torch.from_numpy((rng.rand(6) < 0.5).astype(np.uint8))
run(E, "logical_and", lambda a, b: torch.logical_and(a, b), [ma, mb], grad=False)
run(E, "logical_or", lambda a, b: torch.logical_or(a, b), [ma, mb], grad=False)
run(E, "logical_not", lambda a: torch.logical_not(a), [ma], grad=False)
run(E, "logical_and_f32", lambda a, b: torch.logical_and(a, b), [ca, cb], grad=False)
run(E, "where", lambda c, a, b: torch.where(c.bool(), a, b), [ma, randn(4, 6), randn(6)])
run(E, "where_bcast", lambda c, a, b: torch.where(c.bool(), a, b), [mb, randn(3, 1), randn(1, 6)])
run(E, "cast_f32_i64", lambda a: a.long(), [randn(3, 4) * 10], grad=False)
run(E, "cast_i64_f32", lambda a: a.float(), [ia], grad=False)
run(E, "cast_u8_f32", lambda a: a.float(), [ma], grad=False)
save("ops_basic_elementwise", E)

# ------------------------------------------------------------- reductions --
R = {}
for tag, shape, dim in [("last", (4, 7), -1), ("first", (5, 3, 4), 0), ("mid", (2, 6, 3), 1),
                        ("odd", (3, 33), 1), ("empty", (0, 5), 1)]:
    x = randn(*shape) * 3
    run(R, f"softmax_{tag}", lambda a, d=dim: torch.softmax(a, d), [x])
    run(R, f"log_softmax_{tag}", lambda a, d=dim: torch.log_softmax(a, d), [x])
run(R, "log_softmax_large", lambda a: torch.log_softmax(a, 1), [randn(3, 6) * 100])
for tag, shape, dim, keep in [("d0", (4, 5), 0, False), ("d1k", (4, 5), 1, True), ("mid", (2, 3, 4), 1, False),
                              ("neg", (2, 3, 4), -1, True), ("empty", (0, 4), 0, False),
                              ("emptyk", (3, 0), 1, True)]:
    x = randn(*shape)
    run(R, f"sum_{tag}", lambda a, d=dim, k=keep: torch.sum(a, d, keepdim=k), [x])
    if shape[dim] != 0:
        run(R, f"mean_{tag}", lambda a, d=dim, k=keep: torch.mean(a, d, keepdim=k), [x])
run(R, "sum_all", lambda a: torch.sum(a), [randn(3, 5, 2)])
run(R, "sum_all_big", lambda a: torch.sum(a), [randn(20000)])
run(R, "mean_all", lambda a: torch.mean(a), [randn(3, 5, 2)])
run(R, "sum_i64", lambda a: torch.sum(a, 1), [ia], grad=False)
for tag, shape, dim, keep in [("d0", (4, 5), 0, False), ("d1k", (4, 5), 1, True), ("mid", (2, 3, 4), 1, False),
                              ("odd", (3, 17), -1, False)]:
    x = distinct(*shape)
    run(R, f"max_{tag}", lambda a, d=dim, k=keep: tuple(torch.max(a, d, keepdim=k)), [x])
    run(R, f"argmax_{tag}", lambda a, d=dim, k=keep: torch.argmax(a, d, keepdim=k), [x], grad=False)
# ties: both PyTorch and we report the first maximum and send it the gradient
tie = torch.tensor([[1., 3., 3., 2.], [5., 5., 5., 5.], [0., -1., 2., 2.]])
run(R, "max_ties", lambda a: tuple(torch.max(a, 1)), [tie])
run(R, "max_i64", lambda a: tuple(torch.max(a, 0)), [ia], grad=False)
save("ops_basic_reduce", R)

# ----------------------------------------------------------------- shapes --
S = {}
x = randn(2, 3, 4)
run(S, "reshape", lambda a: a.reshape(4, -1), [x])
run(S, "reshape_perm", lambda a: a.permute(2, 0, 1).reshape(-1, 6), [x])
run(S, "permute", lambda a: a.permute(1, 2, 0) * 1.0, [x])
run(S, "transpose", lambda a: a.transpose(0, 2).contiguous(), [x])
run(S, "flatten", lambda a: torch.flatten(a, 1, 2), [x])
run(S, "unsqueeze", lambda a: a.unsqueeze(-1), [x])
run(S, "squeeze", lambda a: a.squeeze(1), [randn(3, 1, 2)])
run(S, "expand", lambda a: a.expand(2, 4, 3) * 1.0, [randn(4, 1)])
run(S, "cat0", lambda a, b, c: torch.cat([a, b, c], 0), [randn(2, 3), randn(1, 3), randn(0, 3)])
run(S, "cat1", lambda a, b: torch.cat([a, b], 1), [randn(2, 3, 2), randn(2, 1, 2)])
run(S, "cat_perm", lambda a, b: torch.cat([a.t(), b], 0), [randn(3, 2), randn(4, 3)])
run(S, "cat_i64", lambda a, b: torch.cat([a, b], 0), [ia, ia[:1]], grad=False)
run(S, "stack", lambda a, b: torch.stack([a, b], 1), [randn(3, 4), randn(3, 4)])
run(S, "split", lambda a: tuple(torch.split(a, [2, 0, 3], 1)), [randn(3, 5)])
for tag, (d, s, e, st) in {"basic": (1, 1, 4, 1), "neg": (0, -3, -1, 1), "step": (1, 0, 7, 2),
                           "clamp": (1, -100, 100, 3), "empty": (0, 3, 1, 1), "last": (-1, 1, 5, 2)}.items():
    run(S, f"slice_{tag}", lambda a, d=d, s=s, e=e, st=st:
        a[(slice(None),) * (d % 2) + (slice(s, e, st),)], [randn(4, 7)])
run(S, "slice_of_slice", lambda a: a[:, 1:6][1:3, ::2], [randn(4, 7)])
save("ops_basic_shape", S)

# --------------------------------------------------------------- indexing --
I = {}
L = lambda *v: torch.tensor(v, dtype=torch.int64)
run(I, "index_select0", lambda a, i: torch.index_select(a, 0, i), [randn(5, 3), L(4, 0, 0, 2)])
run(I, "index_select1", lambda a, i: torch.index_select(a, 1, i), [randn(2, 6, 3), L(5, 1, 1, 1, 0)])
run(I, "index_select_empty", lambda a, i: torch.index_select(a, 0, i), [randn(5, 3), L()])
run(I, "index_select_i64", lambda a, i: torch.index_select(a, 0, i), [ia, L(2, 2, 0)], grad=False)
gi = torch.from_numpy(rng.randint(0, 4, size=(3, 5)).astype(np.int64))
run(I, "gather1", lambda a, i: torch.gather(a, 1, i), [randn(3, 4), gi])
run(I, "gather0", lambda a, i: torch.gather(a, 0, i), [randn(4, 6), gi])   # index smaller in dim 1
si = torch.from_numpy(rng.randint(0, 4, size=(2, 5)).astype(np.int64))
run(I, "scatter_add0", lambda a, i, s: torch.scatter_add(a, 0, i, s), [randn(4, 5), si, randn(2, 5)])
run(I, "scatter_add1", lambda a, i, s: torch.scatter_add(a, 1, i, s), [randn(2, 4), si, randn(2, 5)])
run(I, "scatter_add_i64", lambda a, i, s: torch.scatter_add(a, 0, i, s), [torch.arange(20).reshape(4, 5), si, torch.ones(2, 5, dtype=torch.int64)], grad=False)
mrow = torch.from_numpy(np.array([1, 0, 1, 1, 0], dtype=np.uint8))
run(I, "masked_rows", lambda a, m: a[m.bool()], [randn(5, 4), mrow])
run(I, "masked_rows_square", lambda a, m: a[m.bool()], [randn(5, 5), mrow])
mel = torch.from_numpy((rng.rand(3, 4) < 0.5).astype(np.uint8))
run(I, "masked_elems", lambda a, m: torch.masked_select(a, m.bool()), [randn(3, 4), mel])
run(I, "masked_bcast", lambda a, m: torch.masked_select(a, m.bool()), [randn(3, 4), mel[0]])
run(I, "masked_none", lambda a, m: a[m.bool()], [randn(5, 4), torch.zeros(5, dtype=torch.uint8)])
run(I, "nonzero", lambda a: torch.nonzero(a).squeeze(1), [torch.tensor([0., 1.5, 0., -2., 3., 0.])],
    grad=False)
run(I, "nonzero_u8", lambda a: torch.nonzero(a).squeeze(1), [mrow], grad=False)
run(I, "nonzero_2d", lambda a: torch.nonzero(a), [mel], grad=False)
run(I, "nonzero_empty", lambda a: torch.nonzero(a).squeeze(1), [torch.zeros(0)], grad=False)
save("ops_basic_index", I)

# ---------------------------------------------------------------- sorting --
# sort: stable=True (ties keep the lower index first) as ours; topk goldens
# are tie-free because PyTorch does not fix the order of tied top-k values.
T = {}
tied = torch.from_numpy(rng.randint(0, 4, size=(3, 9)).astype(np.float32))
for desc in (False, True):
    tag = "desc" if desc else "asc"
    run(T, f"sort_{tag}", lambda a, d=desc: tuple(torch.sort(a, dim=1, descending=d, stable=True)), [distinct(4, 7)])
    run(T, f"sort_dim0_{tag}", lambda a, d=desc: tuple(torch.sort(a, dim=0, descending=d, stable=True)),
        [distinct(5, 3, 2)])
    run(T, f"sort_ties_{tag}", lambda a, d=desc: tuple(torch.sort(a, dim=1, descending=d, stable=True)), [tied])
    run(T, f"argsort_ties_{tag}", lambda a, d=desc: torch.sort(a, dim=1, descending=d, stable=True)[1], [tied],
        grad=False)
    run(T, f"sort_i64_{tag}", lambda a, d=desc: tuple(torch.sort(a, dim=0, descending=d, stable=True)),
        [L(5, -2, 7, 5, 0, -2)], grad=False)
for largest in (True, False):
    tag = "largest" if largest else "smallest"
    run(T, f"topk_{tag}", lambda a, l=largest: tuple(torch.topk(a, 3, 1, largest=l)), [distinct(4, 11)])
    run(T, f"topk_dim0_{tag}", lambda a, l=largest: tuple(torch.topk(a, 2, 0, largest=l)), [distinct(6, 3)])
    run(T, f"topk_big_{tag}", lambda a, l=largest: tuple(torch.topk(a, 50, 0, largest=l)), [distinct(3000)])
run(T, "topk_all", lambda a: tuple(torch.topk(a, 5, 0)), [distinct(5)])
run(T, "topk_zero", lambda a: tuple(torch.topk(a, 0, 1)), [distinct(3, 4)])
run(T, "sort_empty", lambda a: tuple(torch.sort(a, dim=1, stable=True)), [torch.zeros(0, 4)])
save("ops_basic_sort", T)
