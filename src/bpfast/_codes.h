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
    ACT_SOFTMAX = 4,    /* output layer only */
    ACT_EXP = 5         /* output layer only, with the Poisson loss */
};

enum bpf_loss {
    LOSS_MSE = 0,           /* mean over batch and outputs of (A - Y)^2 */
    LOSS_SSE = 1,           /* their sum */
    LOSS_CROSS_ENTROPY = 2, /* with a softmax output: mean over the batch of -sum(Y log A) */
    LOSS_BINARY_CROSS_ENTROPY = 3,  /* with a sigmoid output: mean over the batch of
                                       -sum(Y log A + (1 - Y) log(1 - A)) */
    LOSS_POISSON = 4        /* with an exp output: mean over the batch of the half Poisson
                               deviance sum(Y log(Y / A) - Y + A) */
};

#endif
