/* The codes of activations and losses, one definition for the C loops (_vmath.h, _tiny.h)
 * and the Cython kernels (_kernels.pxd declares these enums from here). Python's names
 * for them are in activations.py; tests/test_consistency.py ties the two together. */
#ifndef BPFAST_CODES_H
#define BPFAST_CODES_H

enum bpf_activation {
    ACT_IDENTITY = 0,
    ACT_SIGMOID = 1,
    ACT_TANH = 2,
    ACT_RELU = 3,
    ACT_SOFTMAX = 4     /* output layer only */
};

enum bpf_loss {
    LOSS_MSE = 0,           /* mean over batch and outputs of (A - Y)^2 */
    LOSS_SSE = 1,           /* their sum */
    LOSS_CROSS_ENTROPY = 2  /* with a softmax output: mean over the batch of -sum(Y log A) */
};

#endif
