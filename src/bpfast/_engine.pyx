# cython: language_level=3
"""The training engine: a whole network's step, and whole epochs, in one nogil call.

An Engine owns no parameters: it points into the flat parameter, gradient and
velocity buffers that ``network.Network`` allocates once and never resizes, and
into a workspace of its own for activations and errors. Training a mini-batch
is four phases, as in FANN: run (forward_all), compute the error
(output_delta_into), backpropagate and update (backward_all), each a call into
``_kernels``.
"""
from cython cimport floating
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from libc.math cimport isfinite

cimport numpy as cnp
import numpy as np

from bpfast._kernels cimport (
    forward_layer, backprop_error_into, activation_backward_inplace, output_delta_into,
    weight_gradients_into, sgd_backward_layer, tiny_network, tiny_sgd_step, momentum_step, all_finite, sum_squares, LOSS_SSE,
)

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


cdef inline floating* layer_output(const Net* net, Py_ssize_t n, floating* acts,
                                   int l) noexcept nogil:
    return acts + n * net.a_off[l]


cdef void forward_all(const Net* net, Py_ssize_t n, const floating* X, const floating* P,
                      floating* acts) noexcept nogil:
    """Run: afterwards layer_output(l) holds A[l+1] = f(A[l] @ W[l] + b[l]) for every layer."""
    cdef int l
    cdef const floating* inp = X
    cdef floating* out
    for l in range(net.n_layers):
        out = layer_output(net, n, acts, l)
        forward_layer(n, net.sizes[l], net.sizes[l + 1], inp, P + net.w_off[l], P + net.b_off[l],
                      net.output_act if l == net.n_layers - 1 else net.hidden_act, out)
        inp = out


cdef double backward_all(const Net* net, Py_ssize_t n, const floating* X, const floating* Y,
                         floating* P, floating* acts, floating* err0, floating* err1,
                         floating* G, floating* V, floating lr, floating w_scale, floating mu,
                         floating decay, bint nesterov) noexcept nogil:
    """Compute the error and backpropagate it; returns the loss of the batch.

    G == NULL: each layer is updated in place by fused SGD (W := w_scale * W -
    lr * dW) right after its error has been sent back through the old W.
    G != NULL: G receives dLoss/dW and dLoss/db; with V != NULL each layer then
    takes its momentum step (momentum_step: mu, L2 decay, nesterov) while its
    gradient is still in cache, else P is untouched.
    """
    cdef int l, L = net.n_layers
    cdef floating* delta = err0
    cdef floating* E = err1
    cdef floating* swap
    cdef const floating* A_prev
    cdef Py_ssize_t n_in, n_out, w, b
    cdef double loss = output_delta_into(n, net.sizes[L], layer_output(net, n, acts, L - 1), Y,
                                         net.loss, net.output_act, delta)
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
            if V != NULL:
                momentum_step(n_in * n_out, P + w, G + w, V + w, lr, mu, decay, nesterov)
                momentum_step(n_out, P + b, G + b, V + b, lr, mu, <floating>0, nesterov)
            if l > 0:
                activation_backward_inplace(n * n_in, E, A_prev, net.hidden_act)
        if l > 0:
            swap = delta
            delta = E
            E = swap
    return loss


cdef double sgd_step(const Net* net, Py_ssize_t n, const floating* X, const floating* Y,
                     floating* P, floating* acts, floating* err0, floating* err1, floating lr,
                     floating w_scale) noexcept nogil:
    """Run, compute the error, backpropagate and update with plain SGD; returns the loss.

    A tiny network (2-2-1) takes the whole step in one call (tiny_sgd_step: the same
    bits, a fraction of the calls).
    """
    if tiny_network(net.n_layers, net.sizes, n, net.hidden_act, net.output_act, net.loss):
        return tiny_sgd_step(net.n_layers, net.sizes, net.w_off, net.b_off, net.a_off,
                             net.hidden_act, net.output_act, net.loss, n, X, Y, P, acts,
                             err0, err1, lr, w_scale)
    forward_all(net, n, X, P, acts)
    return backward_all(net, n, X, Y, P, acts, err0, err1, <floating*>NULL, <floating*>NULL,
                        lr, w_scale, 0, 0, False)


cdef double weight_sq_norm(const Net* net, const floating* P) noexcept nogil:
    """sum of W[l]**2 over all layers (biases are not regularised)."""
    cdef double s = 0
    cdef int l
    for l in range(net.n_layers):
        s += sum_squares(net.b_off[l] - net.w_off[l], P + net.w_off[l])
    return s


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
    no division per sample: 0.06 instead of 0.15 µs per batch of 32.
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


cdef void gather_rows(const floating* src, Py_ssize_t width, const Py_ssize_t* idx,
                      Py_ssize_t count, floating* dst) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(count):
        memcpy(dst + r * width, src + idx[r] * width, width * sizeof(floating))


cdef int run_epoch(const Net* net, Py_ssize_t N, const floating* X, const floating* Y,
                   Py_ssize_t batch_size, floating* P, floating* G, floating* V,
                   floating* acts, floating* err0, floating* err1,
                   floating* Xb, floating* Yb, Py_ssize_t* idx, uint64_t* rng, bint shuffled,
                   floating lr, floating mu, bint nesterov, floating weight_decay,
                   double* loss_sum, Py_ssize_t* n_updates) noexcept nogil:
    """One epoch of mini-batch training; returns 0, or 1 if a batch loss is not finite.

    loss_sum receives the sum over batches of batch loss * batch rows (of the batch
    loss itself for 'sse', a sum already). The last,
    partial batch is trained too: ceil(N / batch_size) updates.
    """
    cdef Py_ssize_t start, n, d_in = net.sizes[0], d_out = net.sizes[net.n_layers]
    cdef const floating* xb
    cdef const floating* yb
    cdef double loss
    cdef bint plain = mu == 0
    if shuffled:
        shuffle(idx, N, rng)
    start = 0
    while start < N:
        n = batch_size if start + batch_size <= N else N - start
        if shuffled:
            gather_rows(X, d_in, idx + start, n, Xb)
            gather_rows(Y, d_out, idx + start, n, Yb)
            xb = Xb
            yb = Yb
        else:
            xb = X + start * d_in
            yb = Y + start * d_out
        if plain:
            # Plain SGD: the buffer-free fused update, decay folded into the GEMM's beta.
            loss = sgd_step(net, n, xb, yb, P, acts, err0, err1, lr, 1 - lr * weight_decay)
        else:
            forward_all(net, n, xb, P, acts)
            loss = backward_all(net, n, xb, yb, P, acts, err0, err1, G, V, lr, 1, mu,
                                weight_decay, nesterov)
        n_updates[0] += 1
        if not isfinite(loss):
            return 1
        loss_sum[0] += loss if net.loss == LOSS_SSE else loss * n
        start += n
    return 0


cdef Py_ssize_t run_epochs(const Net* net, Py_ssize_t N, const floating* X, const floating* Y,
                           Py_ssize_t batch_size, floating* P, floating* G, floating* V,
                           floating* backup, Py_ssize_t n_params, floating* acts, floating* err0,
                           floating* err1, floating* Xb, floating* Yb, Py_ssize_t* idx,
                           uint64_t* rng, bint shuffled, const double* lrs, Py_ssize_t n_epochs,
                           floating mu, bint nesterov, floating weight_decay, double* losses,
                           Py_ssize_t* n_updates, bint* diverged) noexcept nogil:
    """Epochs back to back; returns how many completed, each loss in `losses`.

    An epoch's loss is the mean over samples of its batch losses ('sse': their
    sum) plus 0.5 * weight_decay * sum(W**2) at its end. When the loss or the
    parameters stop being finite, the parameters go back to their copy from the
    start of that epoch, `diverged` is set and the run stops.
    """
    cdef Py_ssize_t e
    cdef double loss_sum, loss
    cdef int status
    diverged[0] = False
    for e in range(n_epochs):
        memcpy(backup, P, n_params * sizeof(floating))
        loss_sum = 0
        status = run_epoch(net, N, X, Y, batch_size, P, G, V, acts, err0, err1,
                           Xb, Yb, idx, rng, shuffled, <floating>lrs[e], mu, nesterov,
                           weight_decay, &loss_sum, n_updates)
        loss = loss_sum if net.loss == LOSS_SSE else loss_sum / N
        if weight_decay != 0:
            loss += 0.5 * weight_decay * weight_sq_norm(net, P)
        if status != 0 or not isfinite(loss) or not all_finite(n_params, P):
            memcpy(P, backup, n_params * sizeof(floating))
            diverged[0] = True
            return e
        losses[e] = loss
    return n_epochs


cdef class Engine:
    """The compiled backend of one Network: pointers into its buffers plus a workspace."""
    cdef Net net
    cdef readonly bint is_double
    cdef Py_ssize_t n_params, max_width, work_size
    cdef readonly Py_ssize_t batch          # rows of the last forward; 0: none to backprop
    cdef object params, grads, velocity, backup, work, scratch, last_X, indices
    cdef uint64_t rng

    def __cinit__(self, sizes, int hidden_act, int output_act, int loss,
                  cnp.ndarray params, cnp.ndarray grads, cnp.ndarray velocity):
        cdef int L = len(sizes) - 1, l
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
        cdef Py_ssize_t off = 0, a = 0
        self.max_width = 0
        for l in range(L + 1):
            self.net.sizes[l] = sizes[l]
        for l in range(L):
            self.net.w_off[l] = off
            off += sizes[l] * sizes[l + 1]
            self.net.b_off[l] = off
            off += sizes[l + 1]
            self.net.a_off[l] = a
            a += sizes[l + 1]
            self.max_width = max(self.max_width, sizes[l + 1])
        self.n_params = off
        for buf in (params, grads, velocity):
            if (buf.ndim != 1 or buf.shape[0] != off or not buf.flags.c_contiguous
                    or buf.dtype != params.dtype or params.dtype not in (np.float32, np.float64)):
                raise ValueError("Engine: parameter buffers do not match the layout")
        self.is_double = params.dtype == np.float64
        self.params = params
        self.grads = grads
        self.velocity = velocity
        self.work_size = 0
        self.batch = 0

    def __dealloc__(self):
        free(self.net.sizes)
        free(self.net.w_off)
        free(self.net.b_off)
        free(self.net.a_off)

    cdef int reserve(self, Py_ssize_t n, bint with_batch_buffers) except -1:
        """Make the workspace hold a batch of n rows (allocated once, grown when needed)."""
        cdef Py_ssize_t width = self.net.a_off[self.net.n_layers - 1] + self.max_width
        cdef Py_ssize_t need = n * (width + 2 * self.max_width)
        if with_batch_buffers:
            need += n * (self.net.sizes[0] + self.net.sizes[self.net.n_layers])
        if need > self.work_size:
            self.work = np.empty(need, dtype=self.params.dtype)
            self.work_size = need
            self.batch = 0
        return 0

    cdef char* work_ptr(self, Py_ssize_t offset):
        return data(self.work) + offset * (8 if self.is_double else 4)

    cdef Py_ssize_t acts_size(self, Py_ssize_t n):
        return n * (self.net.a_off[self.net.n_layers - 1] + self.net.sizes[self.net.n_layers])

    def forward(self, cnp.ndarray X, bint keep=True):
        """Output of the network for X (a new array).

        keep=True keeps the activations for backward(); keep=False (predict,
        evaluate) runs in a scratch buffer of its own, so the kept ones survive.
        """
        cdef Py_ssize_t n = X.shape[0]
        self.check(X, self.net.sizes[0], "X")
        if keep:
            self.reserve(n, False)
            buffer = self.work
        else:
            if self.scratch is None or self.scratch.shape[0] < self.acts_size(n):
                self.scratch = np.empty(self.acts_size(n), dtype=self.params.dtype)
            buffer = self.scratch
        cdef char* P = data(self.params)
        cdef char* x = data(X)
        cdef char* acts = data(buffer)
        with nogil:
            if self.is_double:
                forward_all(&self.net, n, <double*>x, <double*>P, <double*>acts)
            else:
                forward_all(&self.net, n, <float*>x, <float*>P, <float*>acts)
        cdef Py_ssize_t m = self.net.sizes[self.net.n_layers]
        start = n * self.net.a_off[self.net.n_layers - 1]
        out = buffer[start:start + n * m].reshape(n, m).copy()
        if keep:
            self.last_X = X
            self.batch = n
        return out

    cdef check(self, cnp.ndarray A, Py_ssize_t width, str name):
        # Cheap C-level guards that keep memory safe; the friendly checks are in network.py.
        if (A.ndim != 2 or A.shape[1] != width or A.shape[0] < 1 or not A.flags.c_contiguous
                or not A.flags.aligned or A.dtype != self.params.dtype):
            raise ValueError(f"{name}: expected an aligned, C-contiguous {self.params.dtype} "
                             f"array of shape "
                             f"(n, {width}), got {A.dtype} {(<object>A).shape}")

    def backward(self, cnp.ndarray Y):
        """Fill the gradient buffer for the last forward; returns the loss."""
        if self.batch == 0:
            raise RuntimeError("backward() needs a forward() first (and one backward per forward)")
        cdef Py_ssize_t n = self.batch
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        if Y.shape[0] != n:
            raise ValueError(f"Y has {Y.shape[0]} rows but the last forward() had {n}")
        cdef double loss = self.step(data(self.last_X), data(Y), n, False, data(self.grads), 0, 1)
        self.batch = 0
        self.last_X = None
        return loss

    def train_step(self, cnp.ndarray X, cnp.ndarray Y, double lr):
        """forward + backward + fused SGD update for one batch; returns the loss before the step."""
        self.check(X, self.net.sizes[0], "X")
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
        return self.fused_step(X, Y, lr)

    def try_train_step(self, X, Y, lr):
        """train_step for arguments that are exactly what the kernels need, checked in C.

        Anything else (another type, dtype, layout or shape, NaN or infinity, a
        learning rate that is not a positive finite float) raises NeedsValidation,
        and the caller validates and converts at leisure. This keeps a step of a
        tiny network down to one call and a few comparisons.
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
        cdef bint finite
        with nogil:
            if self.is_double:
                finite = all_finite(nx, <double*>x) and all_finite(ny, <double*>y)
            else:
                finite = all_finite(nx, <float*>x) and all_finite(ny, <float*>y)
        if not finite:
            raise NeedsValidation
        return self.fused_step(X, Y, rate)

    cdef inline bint accepts(self, cnp.ndarray A, Py_ssize_t width):
        # Native byte order and alignment too: the type number alone does not tell.
        return (cnp.PyArray_NDIM(A) == 2 and cnp.PyArray_DIMS(A)[1] == width
                and cnp.PyArray_DIMS(A)[0] >= 1 and cnp.PyArray_IS_C_CONTIGUOUS(A)
                and cnp.PyArray_ISALIGNED(A) and cnp.PyArray_ISNOTSWAPPED(A)
                and cnp.PyArray_TYPE(A) == <int>(cnp.NPY_DOUBLE if self.is_double else cnp.NPY_FLOAT))

    cdef double fused_step(self, cnp.ndarray X, cnp.ndarray Y, double lr) except? -1:
        cdef Py_ssize_t n = cnp.PyArray_DIMS(X)[0]
        self.reserve(n, False)
        self.batch = 0
        self.last_X = None
        return self.step(data(X), data(Y), n, True, NULL, lr, 1)

    cdef double step(self, char* x, char* y, Py_ssize_t n, bint run, char* G, double lr,
                     double w_scale) noexcept:
        """Run (if `run`), compute the error and backpropagate one batch of n rows.

        G != NULL: fill the gradient buffer G; G == NULL: fused SGD with lr and
        w_scale (see backward_all). Returns the loss of the batch.
        """
        cdef double loss
        cdef char* P = data(self.params)
        cdef char* acts = self.work_ptr(0)
        cdef char* e0 = self.work_ptr(self.acts_size(n))
        cdef char* e1 = self.work_ptr(self.acts_size(n) + n * self.max_width)
        with nogil:
            if run and G == NULL:
                if self.is_double:
                    loss = sgd_step(&self.net, n, <double*>x, <double*>y, <double*>P,
                                    <double*>acts, <double*>e0, <double*>e1, lr, w_scale)
                else:
                    loss = sgd_step(&self.net, n, <float*>x, <float*>y, <float*>P,
                                    <float*>acts, <float*>e0, <float*>e1, <float>lr,
                                    <float>w_scale)
            elif self.is_double:
                if run:
                    forward_all(&self.net, n, <double*>x, <double*>P, <double*>acts)
                loss = backward_all(&self.net, n, <double*>x, <double*>y, <double*>P,
                                    <double*>acts, <double*>e0, <double*>e1, <double*>G,
                                    <double*>NULL, lr, w_scale, 0, 0, False)
            else:
                if run:
                    forward_all(&self.net, n, <float*>x, <float*>P, <float*>acts)
                loss = backward_all(&self.net, n, <float*>x, <float*>y, <float*>P,
                                    <float*>acts, <float*>e0, <float*>e1, <float*>G,
                                    <float*>NULL, <float>lr, <float>w_scale, 0, 0, False)
        return loss

    def seed(self, uint64_t seed, Py_ssize_t n_samples):
        """Start a fit: seed the native RNG and reset the sample order to 0..N-1."""
        self.rng = seed
        self.indices = np.arange(n_samples, dtype=np.intp)

    def epochs(self, cnp.ndarray X, cnp.ndarray Y, Py_ssize_t batch_size, bint shuffled,
               double[::1] lrs, double momentum, bint nesterov, double weight_decay):
        """len(lrs) epochs over (X, Y) in one nogil call, epoch e with learning rate lrs[e].

        Returns (losses of the completed epochs, n_updates, diverged); see run_epochs.
        """
        cdef Py_ssize_t N = X.shape[0], n_updates = 0, n_epochs = lrs.shape[0], done = 0
        self.check(X, self.net.sizes[0], "X")
        self.check(Y, self.net.sizes[self.net.n_layers], "Y")
        if Y.shape[0] != N or batch_size < 1 or self.indices is None or self.indices.shape[0] != N:
            raise ValueError("epochs: X, Y, batch_size and seed() do not agree")
        cdef Py_ssize_t nb = min(batch_size, N)
        self.reserve(nb, True)
        self.batch = 0
        self.last_X = None
        if self.backup is None:
            self.backup = np.empty_like(self.params)
        losses = np.zeros(n_epochs)
        cdef double[::1] loss_view = losses
        cdef bint diverged = False
        cdef Py_ssize_t acts_n = self.acts_size(nb), mw = self.max_width
        cdef char* P = data(self.params)
        cdef char* G = data(self.grads)
        cdef char* V = data(self.velocity)
        cdef char* B = data(self.backup)
        cdef char* x = data(X)
        cdef char* y = data(Y)
        cdef char* acts = self.work_ptr(0)
        cdef char* e0 = self.work_ptr(acts_n)
        cdef char* e1 = self.work_ptr(acts_n + nb * mw)
        cdef char* xb = self.work_ptr(acts_n + 2 * nb * mw)
        cdef char* yb = self.work_ptr(acts_n + 2 * nb * mw + nb * self.net.sizes[0])
        cdef Py_ssize_t* idx = <Py_ssize_t*>data(self.indices)
        if n_epochs == 0:
            return losses, 0, False
        with nogil:
            if self.is_double:
                done = run_epochs(&self.net, N, <double*>x, <double*>y, nb, <double*>P,
                                  <double*>G, <double*>V, <double*>B, self.n_params,
                                  <double*>acts, <double*>e0, <double*>e1, <double*>xb,
                                  <double*>yb, idx, &self.rng, shuffled, &lrs[0], n_epochs,
                                  momentum, nesterov, weight_decay, &loss_view[0], &n_updates,
                                  &diverged)
            else:
                done = run_epochs(&self.net, N, <float*>x, <float*>y, nb, <float*>P,
                                  <float*>G, <float*>V, <float*>B, self.n_params,
                                  <float*>acts, <float*>e0, <float*>e1, <float*>xb,
                                  <float*>yb, idx, &self.rng, shuffled, &lrs[0], n_epochs,
                                  <float>momentum, nesterov, <float>weight_decay, &loss_view[0],
                                  &n_updates, &diverged)
        return losses[:done], n_updates, diverged

    def params_finite(self):
        """True when no parameter is NaN or infinite."""
        cdef char* P = data(self.params)
        cdef bint ok
        with nogil:
            if self.is_double:
                ok = all_finite(self.n_params, <double*>P)
            else:
                ok = all_finite(self.n_params, <float*>P)
        return ok
