# The compiled kernels that _engine.pyx composes into whole training steps. Row-major,
# batch first:
#   X, A: (n, n_in)   W: (n_in, n_out)   b: (n_out,)
#   Z = X @ W + b,  A = f(Z),  E_prev = delta @ W.T,  dW = A_prev.T @ delta
# Every kernel trusts its arguments: callers validate shapes once, in Python.
from cython cimport floating

cdef extern from "_codes.h":
    # Activation and loss codes, defined once in C (activations.py names them).
    cdef enum bpf_activation:
        ACT_IDENTITY
        ACT_SIGMOID
        ACT_TANH
        ACT_RELU
        ACT_SOFTMAX
        ACT_EXP
    cdef enum bpf_loss:
        LOSS_MSE
        LOSS_SSE
        LOSS_CROSS_ENTROPY
        LOSS_BINARY_CROSS_ENTROPY
        LOSS_POISSON

cdef enum:
    # Rows from which a product with B packed is cut by rows between threads: each then
    # reads all of B, but copies only its own rows of op(A) into tiles.
    ROWS_CUT_PACKED = 128

cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t lda,
               const floating* B, Py_ssize_t ldb,
               floating beta, floating* C, Py_ssize_t ldc,
               const floating* B_packed=*, bint in_kernel=*) noexcept nogil

cdef Py_ssize_t packed_size(Py_ssize_t k, Py_ssize_t n, bint is_double) noexcept nogil
cdef void pack_b(Py_ssize_t k, Py_ssize_t n, const floating* B, floating* out) noexcept nogil

cdef bint forward_in_kernel(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            Py_ssize_t item) noexcept nogil

cdef bint dense_forward_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const floating* X, const floating* W, const floating* b,
                             int activation, floating* A, bint check_input=*,
                             const floating* W_packed=*, bint in_kernel=*) noexcept nogil

cdef double output_delta_into(Py_ssize_t n, Py_ssize_t m, const floating* A, const floating* Y,
                              int loss, int activation, const floating* sample_weight,
                              floating* delta) noexcept nogil

cdef void backprop_error_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                              const floating* delta, const floating* W,
                              floating* E) noexcept nogil

cdef void activation_backward_into(Py_ssize_t size, floating* E, const floating* A,
                                   int activation) noexcept nogil

cdef void weight_gradients_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                const floating* A_prev, const floating* delta,
                                floating* dW, floating* db) noexcept nogil

cdef void sgd_update_into(Py_ssize_t size, floating* W, const floating* grad,
                          floating* velocity, floating lr, floating momentum,
                          floating weight_decay, bint nesterov) noexcept nogil

cdef extern from "_vmath.h":
    # The scalars of one optimizer step, for _vmath.h's update loops.
    ctypedef struct bpf_adam_args:
        double step
        double beta1
        double beta2
        double bc2_sqrt
        double eps
        double step_f
        double bc2_sqrt_f
        double eps_f
        double decay
        double shrink
    ctypedef struct bpf_rprop_args:
        double eta_minus
        double eta_plus
        double step_min
        double step_max
        double decay

cdef void adam_update_into(Py_ssize_t size, floating* W, const floating* grad, floating* m,
                           floating* v, const bpf_adam_args* args) noexcept nogil

cdef bpf_adam_args adam_args(long long t, double lr, double beta1, double beta2, double eps,
                             double weight_decay, bint decoupled, bint folded) noexcept nogil

cdef void rprop_update_into(Py_ssize_t size, floating* W, const floating* grad,
                            floating* prev, floating* steps,
                            const bpf_rprop_args* args) noexcept nogil

cdef bpf_rprop_args rprop_args(double eta_minus, double eta_plus, double step_min,
                               double step_max, double weight_decay) noexcept nogil

cdef void sgd_fused_update_into(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                floating* W, floating* b, const floating* A_prev,
                                const floating* delta, floating lr,
                                floating w_scale) noexcept nogil

cdef void sgd_backward_layer(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                             const floating* A_prev, const floating* delta, floating lr,
                             floating w_scale, floating* W, floating* b, floating* E,
                             int activation) noexcept nogil

cdef bint tiny_network(int L, const Py_ssize_t* sizes, Py_ssize_t n, int hidden_act,
                       int output_act, int loss) noexcept nogil

cdef double tiny_sgd_train_batch(int L, const Py_ssize_t* sizes, const Py_ssize_t* w_off,
                                 const Py_ssize_t* b_off, const Py_ssize_t* a_off,
                                 int hidden_act, int output_act, int loss, Py_ssize_t n,
                                 const floating* X, const floating* Y, floating* P,
                                 floating* acts, floating* err0, floating* err1, floating lr,
                                 floating w_scale) noexcept nogil

cdef double sum_squares(Py_ssize_t size, const floating* x) noexcept nogil

cdef bint all_finite(Py_ssize_t size, const floating* x) noexcept nogil

cdef void team_enter(int n_threads) noexcept nogil

cdef void team_leave() noexcept nogil

ctypedef void (*team_block_fn)(void* ctx, Py_ssize_t block) noexcept nogil

cdef int team_width() noexcept nogil

cdef Py_ssize_t kernel_tile_rows() noexcept nogil

cdef bint tapers(Py_ssize_t total, Py_ssize_t width, Py_ssize_t grain) noexcept nogil

cdef Py_ssize_t split_start(Py_ssize_t total, Py_ssize_t b, Py_ssize_t blocks,
                            Py_ssize_t grain, bint tapered) noexcept nogil

cdef void team_run(Py_ssize_t n_blocks, team_block_fn fn, void* ctx) noexcept nogil

cdef void gather_rows(const floating* src, Py_ssize_t width, const Py_ssize_t* idx,
                      Py_ssize_t count, floating* dst) noexcept nogil
