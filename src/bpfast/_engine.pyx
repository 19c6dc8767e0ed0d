# cython: language_level=3
"""The training engine: a whole network's step, and whole epochs, in one nogil call.

An Engine owns no parameters: it points into the flat parameter, gradient and
velocity buffers that ``network.Network`` allocates once and never resizes (laid out
by ``_layout.param_layout``), and into a workspace of its own for activations and
errors. Training a mini-batch is four phases, as in FANN: run (forward_all), compute
the error (output_delta_into), backpropagate and update (backward_all), each a call
into ``_kernels``. ``_reference_engine.py`` is its pure-Python twin, method for method.
"""
from cython cimport floating
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.math cimport isfinite, sqrt
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cimport numpy as cnp
import threading

import numpy as np

from bpfast._kernels cimport (
    dense_forward_into, backprop_error_into, activation_backward_into, output_delta_into,
    weight_gradients_into, sgd_update_into, adam_update_into, adam_args, rprop_update_into,
    rprop_args, bpf_adam_args, bpf_rprop_args, sgd_backward_layer, tiny_network,
    tiny_sgd_train_batch, all_finite, sum_squares, LOSS_SSE, team_enter, team_leave, gather_rows,
    packed_size, pack_b, forward_in_kernel, team_width, team_run, kernel_tile_rows, tapers,
    split_start, ROWS_CUT_PACKED,
)
from bpfast import _kernels
from bpfast._layout import aligned_zeros, param_layout

cnp.import_array()

cdef extern from *:
    """
    /* The 128-bit product a * b: returns its high half and stores its low half. */
    #ifndef __SIZEOF_INT128__
    #error "bpfast needs a compiler with unsigned __int128 (GCC or Clang, 64-bit)"
    #endif
    static inline uint64_t mul_high(uint64_t a, uint64_t b, uint64_t* low) {
        unsigned __int128 m = (unsigned __int128)a * b;
        *low = (uint64_t)m;
        return (uint64_t)(m >> 64);
    }
    """
    uint64_t mul_high(uint64_t a, uint64_t b, uint64_t* low) noexcept nogil


class NeedsValidation(Exception):
    """Raised by Engine.try_train_step when its arguments need the Python-side checks."""


cdef inline char* data(object array):
    return <char*>cnp.PyArray_DATA(<cnp.ndarray>array)


cdef struct Net:
    int n_layers
    int hidden_act
    int output_act
    int loss
    Py_ssize_t* sizes      # n_layers + 1 widths
    Py_ssize_t* w_off      # offset of W[l] in the flat parameter buffer
    Py_ssize_t* b_off      # offset of b[l]
    Py_ssize_t* a_off      # A[l] starts at n * a_off[l] in the activation workspace


cdef struct Workspace:
    # A batch's scratch memory (float or double, as the Engine's dtype), carved out of one
    # array by Engine.reserve(): every layer's output, the two error buffers the backward
    # pass alternates between, and a batch's gathered rows of X and Y.
    void* acts             # rows * a_off[L-1] + rows * sizes[L]
    void* err0             # rows * widest layer
    void* err1
    void* x_rows           # rows * sizes[0]
    void* y_rows           # rows * sizes[L]
    void* w_rows           # rows: a shuffled batch's sample weights


cdef enum:
    # The optimizers, as Network.fit names them in OPTIMIZERS (same order).
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_ADAMW = 2
    OPT_RPROP = 3

OPTIMIZERS = ("sgd", "adam", "adamw", "rprop")


cdef struct Update:
    # How a batch's gradients change the parameters. The optimizer's state is the flat
    # buffer S of 2 * n_params laid out like the parameters, twice: SGD's velocities in
    # the first half; Adam's first and second moments; Rprop's step sizes and previous
    # gradients.
    int optimizer
    double lr
    double momentum        # SGD; 0: plain SGD, fused into the weight-gradient product
    double weight_decay    # on weights, not biases: L2 (SGD, Adam, Rprop), decoupled (AdamW)
    bint nesterov
    double beta1, beta2, eps
    bint folded            # Adam's eps as scikit-learn places it
    double eta_minus, eta_plus, step_min, step_max
    double clip_norm       # > 0: clip the gradient's global norm to it before the update
    bint from_gradients    # plain SGD from the gradient buffer too, not fused (bpfast.optim)
    long long step         # updates made with this state (Adam's t), counted here


cdef struct StepArgs:
    # An Update's scalars for one step, for weights (decayed) and biases (not).
    bpf_adam_args adam_w, adam_b
    bpf_rprop_args rprop_w, rprop_b


cdef struct Interrupts:
    # Between batches the native loop looks at the clock every `stride` batches and asks
    # Python for pending signals (Ctrl-C) every POLL_NS; the stride adapts so that a look
    # comes about every LOOK_NS, whatever a batch costs.
    Py_ssize_t stride
    Py_ssize_t countdown
    long long last_look
    long long last_poll
    bint raised            # a signal handler raised: stop after this batch


cdef enum:
    POLL_NS = 20000000      # 20 ms
    LOOK_NS = 1000000       # 1 ms

# The exception a signal handler raised during a native loop, raised again by the
# method that ran the loop once it has kept what the loop finished.
cdef object pending_exception = None


cdef inline long long now_ns() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec * 1000000000LL + t.tv_nsec


cdef void interrupts_start(Interrupts* it) noexcept nogil:
    it.stride = 1
    it.countdown = 1
    it.last_look = now_ns()
    it.last_poll = it.last_look
    it.raised = False


cdef bint poll_signals() noexcept nogil:
    """Run Python's signal handlers; True (the exception kept) when one raised."""
    global pending_exception
    with gil:
        try:
            if PyErr_CheckSignals() == 0:
                return False
        except BaseException as exc:
            pending_exception = exc
        return True


cdef bint look(Interrupts* it) noexcept nogil:
    """When it.countdown batches have run: look at the clock, set the next countdown, and
    let Python run its signal handlers every POLL_NS; True when one raised (Ctrl-C)."""
    cdef long long t = now_ns()
    if t - it.last_look < LOOK_NS // 2 and it.stride < (1 << 20):
        it.stride *= 2
    elif t - it.last_look > 2 * LOOK_NS and it.stride > 1:
        it.stride //= 2
    it.countdown = it.stride
    it.last_look = t
    if t - it.last_poll >= POLL_NS:
        it.last_poll = t
        it.raised = poll_signals()
    return it.raised


def take_pending_exception():
    """The exception that stopped the last native loop (a KeyboardInterrupt), once."""
    global pending_exception
    exc = pending_exception
    pending_exception = None
    return exc


# ---------------------------------------------------------------- the phases

cdef Update plain_sgd(double lr) noexcept nogil:
    """The settings of plain SGD at learning rate lr (train_step's update)."""
    cdef Update upd
    memset(&upd, 0, sizeof(Update))
    upd.optimizer = OPT_SGD
    upd.lr = lr
    return upd


cdef inline floating* layer_output(const Net* net, Py_ssize_t n, floating* acts,
                                   int l) noexcept nogil:
    return acts + n * net.a_off[l]


cdef bint forward_all(const Net* net, Py_ssize_t n, const floating* X, const floating* P,
                      floating* acts, bint check_input=False, const floating* packs=NULL,
                      const Py_ssize_t* pack_off=NULL, Py_ssize_t row0=0,
                      Py_ssize_t n_all=0, bint in_kernel=False) noexcept nogil:
    """Run: afterwards layer_output(l) holds A[l+1] = f(A[l] @ W[l] + b[l]) for every layer.
    check_input: False, and nothing more run, when X holds a NaN or an infinity (found in
    the first layer's product, see dense_forward_into). packs: NULL, or the weights
    packed by Engine.pack_weights, layer l's at pack_off[l] (-1: not packed).
    row0, n_all: these n rows are rows row0.. of a forward of n_all rows, whose outputs
    they fill in place (X is their first row); in_kernel: see forward_rows."""
    cdef int l
    cdef const floating* inp = X
    cdef floating* out
    cdef const floating* W_packed
    if n_all == 0:
        n_all = n
    for l in range(net.n_layers):
        out = layer_output(net, n_all, acts, l) + row0 * net.sizes[l + 1]
        W_packed = packs + pack_off[l] if packs != NULL and pack_off[l] >= 0 else NULL
        if not dense_forward_into(n, net.sizes[l], net.sizes[l + 1], inp, P + net.w_off[l],
                                  P + net.b_off[l],
                                  net.output_act if l == net.n_layers - 1 else net.hidden_act,
                                  out, check_input and l == 0, W_packed, in_kernel):
            return False
        inp = out
    return True


# The largest scratch memory (bytes) an Engine keeps between predictions.
SPARE_BYTES = 16 * 1024 * 1024

# The largest weight matrix (bytes) that forward_rows cuts by rows unpacked.
cdef Py_ssize_t ROWS_SPLIT_WEIGHTS = 1024 * 1024


cdef struct RowsJob:
    # A prediction's rows cut into `blocks` blocks (tapered: see tapers in _kernels), each
    # run through every layer apart.
    const Net* net
    Py_ssize_t n, blocks, unit
    bint tapered
    const void* X
    const void* P
    void* acts
    const void* packs
    const Py_ssize_t* pack_off
    bint check_input, is_double
    int failed


cdef void rows_block(void* ctx, Py_ssize_t block) noexcept nogil:
    cdef RowsJob* job = <RowsJob*>ctx
    cdef Py_ssize_t start = split_start(job.n, block, job.blocks, job.unit, job.tapered)
    cdef Py_ssize_t count = (split_start(job.n, block + 1, job.blocks, job.unit, job.tapered)
                             - start)
    cdef Py_ssize_t width = job.net.sizes[0]
    cdef bint ok = True
    if count <= 0:
        return
    if job.is_double:
        ok = forward_all(job.net, count, <const double*>job.X + start * width,
                         <const double*>job.P, <double*>job.acts, job.check_input,
                         <const double*>job.packs, job.pack_off, start, job.n, True)
    else:
        ok = forward_all(job.net, count, <const float*>job.X + start * width,
                         <const float*>job.P, <float*>job.acts, job.check_input,
                         <const float*>job.packs, job.pack_off, start, job.n, True)
    if not ok:
        job.failed = 1


cdef bint forward_rows(const Net* net, Py_ssize_t n, const floating* X, const floating* P,
                       floating* acts, bint check_input=False, const floating* packs=NULL,
                       const Py_ssize_t* pack_off=NULL) noexcept nogil:
    """forward_all, its rows cut between the threads when every layer's product runs in
    the register kernel, and each layer's weights fit in L2 (ROWS_SPLIT_WEIGHTS) or are
    packed, with ROWS_CUT_PACKED rows or more (gemm() would cut that product by rows
    too): each block of rows goes through all the layers apart, with one handing out of
    work instead of one per product and element-wise pass. Other wide layers are cut by
    products, so that each thread reads, or copies, its share of their weights. The
    kernel's chains do not depend on the rows around them, nor do the element-wise
    loops: the bits of forward_all."""
    cdef int l
    cdef RowsJob job
    job.unit = kernel_tile_rows()      # blocks of whole tiles
    job.blocks = min(<Py_ssize_t>team_width(), n // (2 * job.unit))
    cdef bint by_rows = job.blocks >= 2
    for l in range(net.n_layers):
        by_rows = by_rows and forward_in_kernel(n, net.sizes[l], net.sizes[l + 1],
                                                sizeof(floating)) and (
            net.sizes[l] * net.sizes[l + 1] * sizeof(floating) <= ROWS_SPLIT_WEIGHTS
            or (n >= ROWS_CUT_PACKED and packs != NULL and pack_off[l] >= 0))
    if not by_rows:
        return forward_all(net, n, X, P, acts, check_input, packs, pack_off)
    job.tapered = tapers(n, job.blocks, job.unit)
    if job.tapered:
        job.blocks *= 2
    job.net = net
    job.n = n
    job.X = X
    job.P = P
    job.acts = acts
    job.packs = packs
    job.pack_off = pack_off
    job.check_input = check_input
    job.is_double = floating is double
    job.failed = 0
    team_run(job.blocks, rows_block, &job)
    return not job.failed


cdef void update_layer(const Net* net, int l, floating* P, const floating* G, floating* S,
                       Py_ssize_t n_params, const Update* upd,
                       const StepArgs* args) noexcept nogil:
    """Layer l's parameters take the optimizer's step from their gradients G; its state is
    at the same offsets in S's halves (S and S + n_params)."""
    cdef Py_ssize_t w = net.w_off[l], b = net.b_off[l]
    cdef Py_ssize_t nw = b - w, nb = net.sizes[l + 1]
    cdef floating* S2 = S + n_params
    cdef floating lr = <floating>upd.lr
    if upd.optimizer == OPT_SGD:
        sgd_update_into(nw, P + w, G + w, S + w if upd.momentum != 0 else <floating*>NULL, lr,
                        <floating>upd.momentum, <floating>upd.weight_decay, upd.nesterov)
        sgd_update_into(nb, P + b, G + b, S + b if upd.momentum != 0 else <floating*>NULL, lr,
                        <floating>upd.momentum, <floating>0, upd.nesterov)
    elif upd.optimizer == OPT_RPROP:
        rprop_update_into(nw, P + w, G + w, S2 + w, S + w, &args.rprop_w)
        rprop_update_into(nb, P + b, G + b, S2 + b, S + b, &args.rprop_b)
    else:
        adam_update_into(nw, P + w, G + w, S + w, S2 + w, &args.adam_w)
        adam_update_into(nb, P + b, G + b, S + b, S2 + b, &args.adam_b)


cdef double backward_all(const Net* net, Py_ssize_t n, const floating* X, const floating* Y,
                         const floating* sw, floating* P, const Workspace* ws, floating* G,
                         floating* S, Py_ssize_t n_params, const Update* upd,
                         const StepArgs* args) noexcept nogil:
    """Compute the error (sample weights sw, or NULL) and backpropagate it; returns the loss.

    G == NULL: each layer is updated in place by fused plain SGD (W := (1 - lr * decay) *
    W - lr * dW) right after its error has been sent back through the old W.
    G != NULL: G receives dLoss/dW and dLoss/db; with args != NULL each layer then takes
    the optimizer's step (update_layer) while its gradient is still in cache, else P is
    untouched.
    """
    cdef int l, L = net.n_layers
    cdef floating* acts = <floating*>ws.acts
    cdef floating* delta = <floating*>ws.err0
    cdef floating* E = <floating*>ws.err1
    cdef floating* swap
    cdef const floating* A_prev
    cdef Py_ssize_t n_in, n_out, w, b
    cdef floating lr = upd.lr if upd != NULL else 0
    cdef floating w_scale = 1 - lr * <floating>upd.weight_decay if upd != NULL else 1
    cdef double loss = output_delta_into(n, net.sizes[L], layer_output(net, n, acts, L - 1), Y,
                                         net.loss, net.output_act, sw, delta)
    for l in range(L - 1, -1, -1):
        n_in = net.sizes[l]
        n_out = net.sizes[l + 1]
        w = net.w_off[l]
        b = net.b_off[l]
        A_prev = X if l == 0 else layer_output(net, n, acts, l - 1)
        if G == NULL:
            sgd_backward_layer(n, n_in, n_out, A_prev, delta, lr, w_scale, P + w, P + b,
                               E if l > 0 else <floating*>NULL, net.hidden_act)
        else:
            if l > 0:
                backprop_error_into(n, n_in, n_out, delta, P + w, E)
            weight_gradients_into(n, n_in, n_out, A_prev, delta, G + w, G + b)
            if args != NULL:
                update_layer(net, l, P, G, S, n_params, upd, args)
            if l > 0:
                activation_backward_into(n * n_in, E, A_prev, net.hidden_act)
        if l > 0:
            swap = delta
            delta = E
            E = swap
    return loss


cdef double sgd_train_batch(const Net* net, Py_ssize_t n, const floating* X, const floating* Y,
                            const floating* sw, floating* P, const Workspace* ws,
                            const Update* upd) noexcept nogil:
    """Run, compute the error, backpropagate and update with plain SGD; returns the loss.

    A tiny network (2-2-1) takes the whole step in one call (tiny_sgd_train_batch: the
    same bits, a fraction of the calls).
    """
    cdef floating lr = upd.lr
    if sw == NULL and tiny_network(net.n_layers, net.sizes, n, net.hidden_act,
                                   net.output_act, net.loss):
        return tiny_sgd_train_batch(net.n_layers, net.sizes, net.w_off, net.b_off, net.a_off,
                                    net.hidden_act, net.output_act, net.loss, n, X, Y, P,
                                    <floating*>ws.acts, <floating*>ws.err0, <floating*>ws.err1,
                                    lr, 1 - lr * <floating>upd.weight_decay)
    forward_all(net, n, X, P, <floating*>ws.acts)
    return backward_all(net, n, X, Y, sw, P, ws, <floating*>NULL, <floating*>NULL, 0, upd,
                        NULL)


cdef void prepare_step(Update* upd, StepArgs* args) noexcept nogil:
    """Count the step and compute its scalars (Adam's bias corrections, ...)."""
    upd.step += 1
    if upd.optimizer == OPT_ADAM or upd.optimizer == OPT_ADAMW:
        args.adam_w = adam_args(upd.step, upd.lr, upd.beta1, upd.beta2, upd.eps,
                                upd.weight_decay, upd.optimizer == OPT_ADAMW, upd.folded)
        args.adam_b = adam_args(upd.step, upd.lr, upd.beta1, upd.beta2, upd.eps, 0,
                                upd.optimizer == OPT_ADAMW, upd.folded)
    elif upd.optimizer == OPT_RPROP:
        args.rprop_w = rprop_args(upd.eta_minus, upd.eta_plus, upd.step_min, upd.step_max,
                                  upd.weight_decay)
        args.rprop_b = rprop_args(upd.eta_minus, upd.eta_plus, upd.step_min, upd.step_max, 0)


cdef void step_from_gradients(const Net* net, floating* P, floating* G, floating* S,
                              Py_ssize_t n_params, Update* upd) noexcept nogil:
    """The optimizer's step from the gradients in G, all layers: clip their global norm to
    upd.clip_norm first when it is > 0 (as torch.nn.utils.clip_grad_norm_: G *= min(1,
    clip / (norm + 1e-6)))."""
    cdef StepArgs args
    cdef double scale
    cdef int l
    prepare_step(upd, &args)
    if upd.clip_norm > 0:
        scale = upd.clip_norm / (sqrt(sum_squares(n_params, G)) + 1e-6)
        if scale < 1:
            scale_buffer(n_params, G, <floating>scale)
    for l in range(net.n_layers):
        update_layer(net, l, P, G, S, n_params, upd, &args)


cdef double train_batch(const Net* net, Py_ssize_t n, const floating* X, const floating* Y,
                        const floating* sw, floating* P, floating* G, floating* S,
                        Py_ssize_t n_params, const Workspace* ws, Update* upd) noexcept nogil:
    """One update on one batch: fused plain SGD; or the gradients into G and the optimizer's
    step from them, layer by layer while each is in cache, or after all of them when their
    global norm is clipped."""
    cdef StepArgs args
    cdef double loss
    if (upd.optimizer == OPT_SGD and upd.momentum == 0 and upd.clip_norm == 0
            and not upd.from_gradients):
        upd.step += 1
        return sgd_train_batch(net, n, X, Y, sw, P, ws, upd)
    forward_all(net, n, X, P, <floating*>ws.acts)
    if upd.clip_norm == 0:
        prepare_step(upd, &args)
        return backward_all(net, n, X, Y, sw, P, ws, G, S, n_params, upd, &args)
    loss = backward_all(net, n, X, Y, sw, P, ws, G, S, n_params, upd, NULL)
    step_from_gradients(net, P, G, S, n_params, upd)
    return loss


cdef void scale_buffer(Py_ssize_t size, floating* x, floating factor) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        x[i] *= factor


cdef double weight_sq_norm(const Net* net, const floating* P) noexcept nogil:
    """sum of W[l]**2 over all layers (biases are not regularised)."""
    cdef double s = 0
    cdef int l
    for l in range(net.n_layers):
        s += sum_squares(net.b_off[l] - net.w_off[l], P + net.w_off[l])
    return s


# ---------------------------------------------------------------- epochs

cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    """The next number of SplitMix64: seeded, fast, independent of NumPy's state."""
    state[0] += <uint64_t>0x9E3779B97F4A7C15
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef void shuffle(Py_ssize_t* idx, Py_ssize_t n, uint64_t* state) noexcept nogil:
    """Fisher-Yates with Lemire's unbiased bounded draws: every permutation equally likely.

    j is the high half of the 128-bit product r * (i + 1); when the low half falls
    below 2^64 mod (i + 1) (rarely) r is drawn again. Unlike r % (i + 1) this needs
    no division per sample.
    """
    cdef Py_ssize_t i, j
    cdef uint64_t bound, low, threshold
    for i in range(n - 1, 0, -1):
        bound = <uint64_t>(i + 1)
        j = <Py_ssize_t>mul_high(splitmix64(state), bound, &low)
        if low < bound:
            threshold = (<uint64_t>0 - bound) % bound       # 2^64 mod bound
            while low < threshold:
                j = <Py_ssize_t>mul_high(splitmix64(state), bound, &low)
        idx[i], idx[j] = idx[j], idx[i]


cdef void densify_rows(const EpochRun* run, Py_ssize_t width, const Py_ssize_t* idx,
                       Py_ssize_t first, Py_ssize_t count, floating* dst) noexcept nogil:
    """Rows idx[0..count) (idx NULL: first, first + 1, ...) of the CSR matrix, dense in dst:
    the same numbers the dense matrix holds, so training on either gives the same bits."""
    cdef Py_ssize_t r, i, k
    cdef const floating* values = <floating*>run.csr_data
    memset(dst, 0, count * width * sizeof(floating))
    for r in range(count):
        i = idx[r] if idx != NULL else first + r
        for k in range(run.csr_indptr[i], run.csr_indptr[i + 1]):
            dst[r * width + run.csr_indices[k]] = values[k]


cdef struct EpochRun:
    # One call of run_epochs: the data, the buffers and what it reports back.
    Py_ssize_t n_samples
    Py_ssize_t batch_size
    void* params
    void* grads
    void* state            # the optimizer's state, 2 * n_params
    void* backup           # the parameters at the start of the running epoch
    void* weights          # sample weights, one per row, or NULL
    void* csr_data         # X as CSR (values, column indices, row starts), or NULL: dense
    Py_ssize_t* csr_indices
    Py_ssize_t* csr_indptr
    Py_ssize_t n_params
    Py_ssize_t* order      # the sample order, shuffled in place
    Py_ssize_t* orders     # or given: epoch e visits orders[e * n_samples ...]; NULL: none
    uint64_t rng
    bint shuffled          # visit the rows in `order` (else in place)
    Py_ssize_t n_updates   # out: updates made
    bint diverged          # out: the loss or the parameters stopped being finite
    bint interrupted       # out: a signal handler raised (the parameters are kept)


cdef int run_epoch(const Net* net, const floating* X, const floating* Y, EpochRun* run,
                   const Workspace* ws, Update* upd, Interrupts* it,
                   double* loss_sum) noexcept nogil:
    """One epoch of mini-batch training; returns 0, 1 if a batch loss is not finite, 2 if
    interrupted after a batch, 3 if interrupted after the epoch's last batch.

    loss_sum receives the sum over batches of batch loss * batch rows (of the batch
    loss itself for 'sse', a sum already). The last, partial batch is trained too:
    ceil(N / batch_size) updates.
    """
    cdef Py_ssize_t start = 0, n, N = run.n_samples
    cdef const floating* xb
    cdef const floating* yb
    cdef const floating* wb
    cdef double loss
    cdef Py_ssize_t updates = 0, countdown = it.countdown
    # Plain SGD on dense rows without weights is the fast path of small networks.
    cdef bint fused = (upd.optimizer == OPT_SGD and upd.momentum == 0 and upd.clip_norm == 0
                       and not upd.from_gradients and run.csr_data == NULL
                       and run.weights == NULL)
    cdef int status = 0
    if run.shuffled and run.orders == NULL:
        shuffle(run.order, N, &run.rng)
    while start < N:
        n = run.batch_size if start + run.batch_size <= N else N - start
        batch_rows(net, X, Y, run, ws, start, n, &xb, &yb, &wb)
        if fused:
            loss = sgd_train_batch(net, n, xb, yb, wb, <floating*>run.params, ws, upd)
        else:
            loss = train_batch(net, n, xb, yb, wb, <floating*>run.params, <floating*>run.grads,
                               <floating*>run.state, run.n_params, ws, upd)
        updates += 1
        if not isfinite(loss):
            status = 1
            break
        loss_sum[0] += loss if net.loss == LOSS_SSE else loss * n
        start += n
        countdown -= 1
        if countdown == 0:
            it.countdown = 0
            if look(it):
                # After the epoch's last batch the epoch is complete: it goes in the History.
                status = 2 if start < N else 3
                break
            countdown = it.countdown
    it.countdown = countdown
    run.n_updates += updates
    if fused:
        upd.step += updates         # (train_batch counts its own)
    return status


cdef void batch_rows(const Net* net, const floating* X, const floating* Y, EpochRun* run,
                     const Workspace* ws, Py_ssize_t start, Py_ssize_t n,
                     const floating** xb, const floating** yb,
                     const floating** wb) noexcept nogil:
    """Rows [start, start + n) of the sample order (and their weights, or NULL): gathered
    into the workspace, densified from CSR, or read where they lie."""
    cdef Py_ssize_t d_in = net.sizes[0], d_out = net.sizes[net.n_layers]
    cdef const floating* W = <floating*>run.weights
    wb[0] = NULL
    if run.csr_data != NULL:
        densify_rows(run, d_in, run.order + start if run.shuffled else NULL, start, n,
                     <floating*>ws.x_rows)
    if run.shuffled:
        if run.csr_data == NULL:
            gather_rows(X, d_in, run.order + start, n, <floating*>ws.x_rows)
        gather_rows(Y, d_out, run.order + start, n, <floating*>ws.y_rows)
        xb[0] = <floating*>ws.x_rows
        yb[0] = <floating*>ws.y_rows
        if W != NULL:
            gather_rows(W, 1, run.order + start, n, <floating*>ws.w_rows)
            wb[0] = <floating*>ws.w_rows
    else:
        xb[0] = X + start * d_in if run.csr_data == NULL else <floating*>ws.x_rows
        yb[0] = Y + start * d_out
        if W != NULL:
            wb[0] = W + start


cdef Py_ssize_t run_epochs(const Net* net, const floating* X, const floating* Y, EpochRun* run,
                           const Workspace* ws, Update* upd, const double* lrs,
                           Py_ssize_t n_epochs, double* losses) noexcept nogil:
    """Epochs back to back; returns how many completed, each loss in `losses`.

    An epoch's loss is the mean over samples of its batch losses ('sse': their sum) plus
    0.5 * weight_decay * sum(W**2) at its end. When the loss or the parameters stop being
    finite, the parameters go back to their copy from the start of that epoch,
    run.diverged is set and the run stops. A signal handler that raises (Ctrl-C) stops it
    after the batch in progress, with the parameters of the last update.
    """
    cdef Py_ssize_t e
    cdef double loss_sum, loss
    cdef int status
    cdef floating* P = <floating*>run.params
    cdef Interrupts it
    interrupts_start(&it)
    for e in range(n_epochs):
        memcpy(run.backup, P, run.n_params * sizeof(floating))
        if run.orders != NULL:
            run.order = run.orders + e * run.n_samples
        loss_sum = 0
        upd.lr = lrs[e]
        status = run_epoch(net, X, Y, run, ws, upd, &it, &loss_sum)
        if status == 2:
            run.interrupted = True
            if all_finite(run.n_params, P):
                return e
            status = 1
        elif status == 3:
            run.interrupted = True      # a complete epoch: its loss is kept below
            status = 0
        loss = loss_sum if net.loss == LOSS_SSE else loss_sum / run.n_samples
        if upd.weight_decay != 0 and upd.optimizer != OPT_ADAMW:
            # The L2 term (AdamW's decay is no term of the loss), at the dtype of the
            # parameters, as the updates use it.
            loss += 0.5 * <floating>upd.weight_decay * weight_sq_norm(net, P)
        if status != 0 or not isfinite(loss) or not all_finite(run.n_params, P):
            memcpy(P, run.backup, run.n_params * sizeof(floating))
            run.diverged = True
            return e
        losses[e] = loss
        if run.interrupted:
            return e + 1
    return n_epochs


# ---------------------------------------------------------------- the Engine

cdef class Engine:
    """The compiled backend of one Network: pointers into its buffers plus a workspace."""
    cdef Net net
    cdef readonly bint is_double
    cdef Py_ssize_t n_params, max_width, work_rows
    cdef readonly Py_ssize_t work_size      # elements in the workspace
    cdef readonly Py_ssize_t batch          # rows of the last forward; 0: none to backprop
    cdef object params, grads, state, backup, work, indices
    # The weights packed for the register kernel (pack_weights), at SIMD level pack_level.
    cdef readonly object packs
    cdef object pack_offsets
    cdef int pack_level
    # A prediction's scratch memory, kept for the next one (see forward): fresh pages cost
    # the kernel's zeroing on every call (2% of a 256-row 784-1024-1024-10 prediction).
    cdef object spare, spare_lock
    cdef Workspace ws
    cdef uint64_t rng
    # Threads a call may use when it does not say (0: every CPU allowed; see _team.h).
    cdef public int threads

    def __cinit__(self, sizes, int hidden_act, int output_act, int loss,
                  cnp.ndarray params, cnp.ndarray grads, cnp.ndarray state):
        cdef int L = len(sizes) - 1, l
        layers, n_params = param_layout(sizes)
        self.net.n_layers = L
        self.net.hidden_act = hidden_act
        self.net.output_act = output_act
        self.net.loss = loss
        self.net.sizes = <Py_ssize_t*>malloc((L + 1) * sizeof(Py_ssize_t))
        self.net.w_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
        self.net.b_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
        self.net.a_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
        if not (self.net.sizes and self.net.w_off and self.net.b_off and self.net.a_off):
            raise MemoryError()
        cdef Py_ssize_t acts_width = 0
        self.max_width = max(sizes[1:])
        for l in range(L + 1):
            self.net.sizes[l] = sizes[l]
        for l in range(L):
            self.net.w_off[l] = layers[l].w
            self.net.b_off[l] = layers[l].b
            self.net.a_off[l] = acts_width
            acts_width += sizes[l + 1]
        self.n_params = n_params
        for buf, size in ((params, n_params), (grads, n_params), (state, 2 * n_params)):
            if (buf.ndim != 1 or buf.shape[0] != size or not buf.flags.c_contiguous
                    or buf.dtype != params.dtype or params.dtype not in (np.float32, np.float64)):
                raise ValueError("Engine: parameter buffers do not match the layout")
        self.is_double = params.dtype == np.float64
        self.spare_lock = threading.Lock()
        self.params = params
        self.grads = grads
        self.state = state
        self.work_size = 0
        self.work_rows = 0
        self.batch = 0

    def __dealloc__(self):
        free(self.net.sizes)
        free(self.net.w_off)
        free(self.net.b_off)
        free(self.net.a_off)

    def pack_layout(self):
        """Where each layer's weights lie in the packed copy (-1: rows too short to pack)
        and its elements, at the SIMD level in use now."""
        cdef int l
        offsets = np.full(self.net.n_layers, -1, dtype=np.intp)
        total = 0
        for l in range(self.net.n_layers):
            size = packed_size(self.net.sizes[l], self.net.sizes[l + 1], self.is_double)
            if size > 0:
                offsets[l] = total
                total += size
        return offsets, total

    def packable(self):
        """Whether a weight matrix has rows long enough for the kernel to pack."""
        return self.pack_layout()[1] > 0

    def drop_packs(self):
        """Free the packed weights (a forward running meanwhile keeps its own reference)."""
        self.packs = self.pack_offsets = None

    def pack_weights(self):
        """Pack every weight matrix with long rows as the register kernel packs B, so that
        forward(use_packs=True) skips that work (the same bits), until the parameters
        change: the caller knows when (_packing.py). The number of elements
        packed; the copy reuses the last one's memory."""
        cdef int l, L = self.net.n_layers
        offsets, total = self.pack_layout()
        packs = self.packs
        if packs is None or packs.shape[0] != total:
            packs = aligned_zeros(max(total, 1), self.params.dtype)
        cdef char* P = data(self.params)
        cdef char* out = data(packs)
        for l in range(L):
            if offsets[l] < 0:
                continue
            if self.is_double:
                pack_b(self.net.sizes[l], self.net.sizes[l + 1], <double*>P + self.net.w_off[l],
                       <double*>out + <Py_ssize_t>offsets[l])
            else:
                pack_b(self.net.sizes[l], self.net.sizes[l + 1], <float*>P + self.net.w_off[l],
                       <float*>out + <Py_ssize_t>offsets[l])
        self.packs, self.pack_offsets = (packs, offsets) if total > 0 else (None, None)
        self.pack_level = _kernels.simd_level()
        return total

    cdef Py_ssize_t acts_size(self, Py_ssize_t n):
        return n * (self.net.a_off[self.net.n_layers - 1] + self.net.sizes[self.net.n_layers])

    cdef int reserve(self, Py_ssize_t n) except -1:
        """Make the workspace hold a batch of n rows, and point self.ws into it.

        Allocated once and grown when needed; shrunk when a batch needs less than a
        quarter of it, so that one huge batch does not pin its memory for good.
        """
        cdef Py_ssize_t d_in = self.net.sizes[0], d_out = self.net.sizes[self.net.n_layers]
        cdef Py_ssize_t need = self.acts_size(n) + n * (2 * self.max_width + d_in + d_out + 1)
        cdef Py_ssize_t item = 8 if self.is_double else 4
        cdef bint moved = need > self.work_size or 4 * need < self.work_size
        if moved:
            self.work = None
            self.work = np.empty(need, dtype=self.params.dtype)
            self.work_size = need
            self.batch = 0
        if moved or n != self.work_rows:
            self.work_rows = n
            self.ws.acts = data(self.work)
            self.ws.err0 = <char*>self.ws.acts + item * self.acts_size(n)
            self.ws.err1 = <char*>self.ws.err0 + item * n * self.max_width
            self.ws.x_rows = <char*>self.ws.err1 + item * n * self.max_width
            self.ws.y_rows = <char*>self.ws.x_rows + item * n * d_in
            self.ws.w_rows = <char*>self.ws.y_rows + item * n * d_out
        return 0

    cdef check(self, cnp.ndarray A, Py_ssize_t width, str name):
        # Cheap C-level guards that keep memory safe; the friendly checks are in network.py.
        if (A.ndim != 2 or A.shape[1] != width or A.shape[0] < 1 or not A.flags.c_contiguous
                or not A.flags.aligned or A.dtype != self.params.dtype):
            raise ValueError(f"{name}: expected an aligned, C-contiguous {self.params.dtype} "
                             f"array of shape (n, {width}), got {A.dtype} {(<object>A).shape}")

    def forward(self, cnp.ndarray X, bint keep=True, int threads=-1, bint check_input=False,
                bint use_packs=False):
        """Output of the network for X (a new array).

        keep=True keeps a copy of X and the activations for backward(). keep=False
        (predict, evaluate) runs in memory of its own and changes nothing in the Engine,
        so that many threads may predict at once. check_input=True (with keep=False): None
        when X holds a NaN or an infinity, checked on the first layer's product (cheaper
        than X when the layer narrows; see dense_forward_into). use_packs=True (with
        keep=False): the weights packed by pack_weights, which the caller knows to be
        current, are read instead of the live ones (if packed at this SIMD level).
        """
        cdef bint ok = True
        cdef Py_ssize_t n = X.shape[0], m = self.net.sizes[self.net.n_layers]
        self.check(X, self.net.sizes[0], "X")
        if keep:
            self.reserve(n)
            memcpy(self.ws.x_rows, data(X), n * self.net.sizes[0] * (8 if self.is_double else 4))
            acts = self.ws.acts
        else:
            scratch = self.take_scratch(self.acts_size(n))
            acts = data(scratch)
        cdef char* P = data(self.params)
        cdef char* x = data(X) if not keep else <char*>self.ws.x_rows
        cdef char* a = <char*>acts
        cdef char* packs = NULL
        cdef Py_ssize_t* pack_off = NULL
        packed, offsets = self.packs, self.pack_offsets     # held while the kernels read them
        if (use_packs and packed is not None and not keep
                and _kernels.simd_level() == self.pack_level):
            packs = data(packed)
            pack_off = <Py_ssize_t*>data(offsets)
        with nogil:
            team_enter(self.threads if threads < 0 else threads)
            if keep and self.is_double:
                forward_all(&self.net, n, <double*>x, <double*>P, <double*>a)
            elif keep:
                forward_all(&self.net, n, <float*>x, <float*>P, <float*>a)
            elif self.is_double:
                ok = forward_rows(&self.net, n, <double*>x, <double*>P, <double*>a,
                                  check_input, <double*>packs, pack_off)
            else:
                ok = forward_rows(&self.net, n, <float*>x, <float*>P, <float*>a,
                                  check_input, <float*>packs, pack_off)
            team_leave()
        if not ok:
            return None
        start = n * self.net.a_off[self.net.n_layers - 1]
        out = (self.work if keep else scratch)[start:start + n * m].reshape(n, m).copy()
        if keep:
            self.batch = n
        else:
            self.keep_scratch(scratch)
        return out

    cdef object take_scratch(self, Py_ssize_t size):
        """Memory for a prediction's activations: the one kept from the last prediction
        if it is large enough and no other thread has it, else new."""
        with self.spare_lock:
            scratch, self.spare = self.spare, None
        if scratch is None or scratch.shape[0] < size:
            scratch = np.empty(size, dtype=self.params.dtype)
        return scratch

    cdef void keep_scratch(self, scratch):
        """Keep a prediction's scratch for the next one, up to SPARE_BYTES."""
        if scratch.nbytes <= SPARE_BYTES:
            with self.spare_lock:
                if self.spare is None or self.spare.shape[0] < scratch.shape[0]:
                    self.spare = scratch

    def backward(self, cnp.ndarray Y, sample_weight=None, int threads=-1):
        """Fill the gradient buffer for the last forward (sample weights: None or one per
        row, of the network's dtype); returns the loss."""
        if self.batch == 0:
            raise RuntimeError("backward() needs a forward() first (and one backward per forward)")
        cdef Py_ssize_t n = self.batch
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        if Y.shape[0] != n:
            raise ValueError(f"Y has {Y.shape[0]} rows but the last forward() had {n}")
        cdef double loss = self.backprop_batch(self.ws.x_rows, data(Y), n, False,
                                               data(self.grads), NULL,
                                               self.weights_of(sample_weight, n), threads)
        self.batch = 0
        return loss

    def loss_and_gradient(self, cnp.ndarray X, cnp.ndarray Y, sample_weight=None,
                          int threads=-1):
        """The loss over all of (X, Y) and its gradient in the gradient buffer, in one
        nogil call (forward and backward over every row at once: full-batch optimizers
        such as L-BFGS). Nothing is kept for a later backward()."""
        self.check(X, self.net.sizes[0], "X")
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        cdef Py_ssize_t n = X.shape[0]
        if Y.shape[0] != n:
            raise ValueError(f"X has {n} rows but Y has {Y.shape[0]}")
        cdef void* weights = self.weights_of(sample_weight, n)
        self.reserve(n)
        self.batch = 0
        return self.backprop_batch(data(X), data(Y), n, True, data(self.grads), NULL, weights,
                                   threads)

    cdef void* weights_of(self, sample_weight, Py_ssize_t n) except? NULL:
        """The data of sample weights for n rows (checked like X), or NULL for none."""
        if sample_weight is None:
            return NULL
        self.check(sample_weight.reshape(n, 1), 1, "sample_weight")
        return data(sample_weight)

    def train_step(self, cnp.ndarray X, cnp.ndarray Y, double lr, int threads=-1):
        """forward + backward + fused SGD update for one batch; returns the loss before the
        step, or NaN with the parameters left as they were when the step would make the
        loss or the parameters non-finite."""
        self.check(X, self.net.sizes[0], "X")
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        return self.fused_step(X, Y, lr, threads)

    def try_train_step(self, X, Y, lr, int threads=-1):
        """train_step for arguments that are exactly what the kernels need, checked in C.

        Anything else (another type, dtype, layout or shape, NaN or infinity, memory
        shared with the parameters, a learning rate that is not a positive finite float)
        raises NeedsValidation, and the caller validates and converts at leisure. This
        keeps a step of a tiny network down to one call and a few comparisons.
        """
        if not (type(X) is np.ndarray and type(Y) is np.ndarray and type(lr) is float):
            raise NeedsValidation
        cdef double rate = lr
        if not (self.accepts(X, self.net.sizes[0]) and
                self.accepts(Y, self.net.sizes[self.net.n_layers]) and
                cnp.PyArray_DIMS(<cnp.ndarray>X)[0] == cnp.PyArray_DIMS(<cnp.ndarray>Y)[0] and
                rate > 0 and isfinite(rate)):
            raise NeedsValidation
        cdef Py_ssize_t nx = cnp.PyArray_SIZE(<cnp.ndarray>X), ny = cnp.PyArray_SIZE(<cnp.ndarray>Y)
        cdef char* x = data(X)
        cdef char* y = data(Y)
        if self.overlaps_params(x, nx) or self.overlaps_params(y, ny):
            raise NeedsValidation
        cdef bint finite
        with nogil:
            if self.is_double:
                finite = all_finite(nx, <double*>x) and all_finite(ny, <double*>y)
            else:
                finite = all_finite(nx, <float*>x) and all_finite(ny, <float*>y)
        if not finite:
            raise NeedsValidation
        return self.fused_step(X, Y, rate, threads)

    cdef inline bint overlaps_params(self, char* start, Py_ssize_t count):
        cdef Py_ssize_t item = 8 if self.is_double else 4
        cdef char* P = data(self.params)
        return start < P + self.n_params * item and P < start + count * item

    cdef inline bint accepts(self, cnp.ndarray A, Py_ssize_t width):
        # Native byte order and alignment too: the type number alone does not tell.
        return (cnp.PyArray_NDIM(A) == 2 and cnp.PyArray_DIMS(A)[1] == width
                and cnp.PyArray_DIMS(A)[0] >= 1 and cnp.PyArray_IS_C_CONTIGUOUS(A)
                and cnp.PyArray_ISALIGNED(A) and cnp.PyArray_ISNOTSWAPPED(A)
                and cnp.PyArray_TYPE(A) == <int>(cnp.NPY_DOUBLE if self.is_double else cnp.NPY_FLOAT))

    cdef double fused_step(self, cnp.ndarray X, cnp.ndarray Y, double lr,
                           int threads) except? -1:
        cdef Py_ssize_t n = cnp.PyArray_DIMS(X)[0]
        cdef Update upd = plain_sgd(lr)
        self.reserve(n)
        self.batch = 0
        if self.backup is None:
            self.backup = np.empty_like(self.params)
        cdef char* P = data(self.params)
        cdef char* B = data(self.backup)
        cdef Py_ssize_t size = self.n_params * (8 if self.is_double else 4)
        memcpy(B, P, size)
        cdef double loss = self.backprop_batch(data(X), data(Y), n, True, NULL, &upd, NULL,
                                               threads)
        cdef bint finite
        with nogil:
            finite = isfinite(loss) and (all_finite(self.n_params, <double*>P) if self.is_double
                                         else all_finite(self.n_params, <float*>P))
        if not finite:
            memcpy(P, B, size)
            return float("nan")
        return loss

    cdef double backprop_batch(self, void* x, void* y, Py_ssize_t n, bint run, void* G,
                               const Update* upd, void* sw, int threads) noexcept:
        """Run (if `run`), compute the error and backpropagate one batch of n rows.

        upd != NULL: train with it (G == NULL: fused plain SGD); upd == NULL: fill the
        gradient buffer G, parameters untouched. Returns the loss of the batch.
        threads: as many threads (-1: self.threads).
        """
        cdef double loss
        cdef void* P = data(self.params)
        with nogil:
            team_enter(self.threads if threads < 0 else threads)
            if self.is_double:
                loss = backprop_typed(&self.net, n, <double*>x, <double*>y, <double*>sw,
                                      <double*>P, <double*>G, &self.ws, run, upd)
            else:
                loss = backprop_typed(&self.net, n, <float*>x, <float*>y, <float*>sw,
                                      <float*>P, <float*>G, &self.ws, run, upd)
            team_leave()
        return loss

    def seed(self, uint64_t seed, Py_ssize_t n_samples):
        """Start a fit: seed the native RNG and reset the sample order to 0..N-1."""
        self.rng = seed
        self.indices = np.arange(n_samples, dtype=np.intp)

    def epochs(self, X, cnp.ndarray Y, Py_ssize_t batch_size, bint shuffled,
               double[::1] lrs, sample_weight, Update update, int threads=-1, orders=None):
        """len(lrs) epochs over (X, Y) in one nogil call, epoch e with learning rate lrs[e].

        X: a dense array, or a CSR matrix as (values, column indices, row starts) of
        intp indices and values of the network's dtype, densified a batch at a time.

        sample_weight: None or one weight per row, of the network's dtype. update: the
        optimizer's settings (an Update given as a dict; its `step` counts on from there).
        orders: None, or the sample order of every epoch, intp of shape (len(lrs), N), each
        row a permutation of 0..N-1 (checked here for bounds only): epoch e visits
        orders[e] (shuffled must be True) and the native generator is not used.
        Returns (losses of the completed epochs, n_updates, diverged, interrupted, step);
        see run_epochs. After an interrupt, take_pending_exception() gives what was raised.
        """
        cdef Py_ssize_t N = Y.shape[0], n_epochs = lrs.shape[0], done = 0
        sparse = isinstance(X, tuple)
        if sparse:
            values, columns, starts = X
            if (starts.shape[0] != N + 1 or columns.dtype != np.intp or starts.dtype != np.intp
                    or values.dtype != self.params.dtype or columns.shape[0] != values.shape[0]
                    or starts[N] != values.shape[0]):
                raise ValueError("epochs: the CSR arrays do not agree")
            X = self.params[:1]         # a placeholder pointer; rows come from the CSR arrays
        else:
            self.check(X, self.net.sizes[0], "X")
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        if (not sparse and X.shape[0] != N) or batch_size < 1 or self.indices is None or self.indices.shape[0] != N:
            raise ValueError("epochs: X, Y, batch_size and seed() do not agree")
        if sample_weight is not None:
            self.check(sample_weight.reshape(N, 1), 1, "sample_weight")
        if orders is not None and not (
                shuffled and isinstance(orders, np.ndarray) and orders.dtype == np.intp
                and orders.flags.c_contiguous and orders.shape == (n_epochs, N)
                and (orders.size == 0 or (orders.min() >= 0 and orders.max() < N))):
            raise ValueError("epochs: orders must be intp of shape (epochs, N), rows in 0..N-1, "
                             "and shuffled True")
        cdef Py_ssize_t rows = min(batch_size, N)
        self.reserve(rows)
        self.batch = 0
        if self.backup is None:
            self.backup = np.empty_like(self.params)
        losses = np.zeros(n_epochs)
        if n_epochs == 0:
            return losses, 0, False, False, update.step
        cdef double[::1] loss_view = losses
        cdef EpochRun run
        run.n_samples = N
        run.batch_size = rows
        run.params = data(self.params)
        run.grads = data(self.grads)
        run.state = data(self.state)
        run.backup = data(self.backup)
        run.weights = data(sample_weight) if sample_weight is not None else NULL
        run.csr_data = data(values) if sparse else NULL
        run.csr_indices = <Py_ssize_t*>data(columns) if sparse else NULL
        run.csr_indptr = <Py_ssize_t*>data(starts) if sparse else NULL
        run.n_params = self.n_params
        run.order = <Py_ssize_t*>data(self.indices)
        run.orders = <Py_ssize_t*>data(orders) if orders is not None else NULL
        run.rng = self.rng
        run.shuffled = shuffled
        run.n_updates = 0
        run.diverged = False
        run.interrupted = False
        cdef void* x = data(X)
        cdef void* y = data(Y)
        with nogil:
            team_enter(self.threads if threads < 0 else threads)
            if self.is_double:
                done = run_epochs(&self.net, <double*>x, <double*>y, &run, &self.ws, &update,
                                  &lrs[0], n_epochs, &loss_view[0])
            else:
                done = run_epochs(&self.net, <float*>x, <float*>y, &run, &self.ws, &update,
                                  &lrs[0], n_epochs, &loss_view[0])
            team_leave()
        self.rng = run.rng
        return losses[:done], run.n_updates, run.diverged, run.interrupted, update.step

    def step_from_gradients(self, Update update, int threads=-1):
        """The optimizer's step from the gradient buffer (what backward() filled); returns
        the new step count. bpfast.optim's step()."""
        cdef void* P = data(self.params)
        cdef void* G = data(self.grads)
        cdef void* S = data(self.state)
        with nogil:
            team_enter(self.threads if threads < 0 else threads)
            if self.is_double:
                step_from_gradients(&self.net, <double*>P, <double*>G, <double*>S,
                                    self.n_params, &update)
            else:
                step_from_gradients(&self.net, <float*>P, <float*>G, <float*>S,
                                    self.n_params, &update)
            team_leave()
        return update.step

    def weight_sq_norm(self):
        """sum of W[l]**2 over all layers, in double (the L2 term's sum of fit's loss)."""
        return self.scan_params(False)

    def params_finite(self):
        """True when no parameter is NaN or infinite."""
        return self.scan_params(True) != 0

    cdef double scan_params(self, bint finite):
        # One read of the parameters: all_finite (as 1 or 0) or weight_sq_norm.
        cdef char* P = data(self.params)
        cdef double s
        with nogil:
            if self.is_double:
                s = (all_finite(self.n_params, <double*>P) if finite
                     else weight_sq_norm(&self.net, <double*>P))
            else:
                s = (all_finite(self.n_params, <float*>P) if finite
                     else weight_sq_norm(&self.net, <float*>P))
        return s


cdef double backprop_typed(const Net* net, Py_ssize_t n, const floating* X, const floating* Y,
                           const floating* sw, floating* P, floating* G, const Workspace* ws,
                           bint run, const Update* upd) noexcept nogil:
    """Engine.backprop_batch for one dtype."""
    if run and G == NULL:
        return sgd_train_batch(net, n, X, Y, sw, P, ws, upd)
    if run:
        forward_all(net, n, X, P, <floating*>ws.acts)
    return backward_all(net, n, X, Y, sw, P, ws, G, <floating*>NULL, 0, upd, NULL)
