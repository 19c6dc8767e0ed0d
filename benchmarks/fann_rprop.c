/* fann_rprop.c: FANN's full-batch Rprop (fann_train_epoch with FANN_TRAIN_RPROP) timed
   inside a C program, for benchmarks/bench_optimizers.py */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <doublefann.h>

/* bench_optimizers.py compiles this program once per run against doublefann (needs
   libfann-dev: without it the FANN rows are skipped) and starts it once per timed block. It
   sets FANN's weights to the case's initial parameters, times n_epochs calls of
   fann_train_epoch over all the rows with CLOCK_PROCESS_CPUTIME_ID and CLOCK_MONOTONIC, and
   prints both times and the MSE of the last epoch (as fann_train_epoch returns it).

   FANN's iRprop- is set to its documented defaults explicitly (increase 1.2, decrease 0.5,
   delta_min 0, delta_max 50, delta_zero 0.1), the error function to FANN_ERRORFUNC_LINEAR
   (the gradient of the MSE; FANN's default FANN_ERRORFUNC_TANH steps along 2 atanh(t - y)),
   and both layers to the logistic sigmoid (FANN_SIGMOID at steepness 0.5).

   usage: fann_rprop n_epochs n_rows n_layers size_0 ... size_last
   stdin (doubles): the weights in fann_get_connection_array's order, the rows of X, the rows of Y
   stdout: "cpu_seconds wall_seconds mse_of_the_last_epoch" */

#include "fann_io.h"

int main(int argc, char **argv)
{
    unsigned j;
    long n_epochs, n_rows, i, r;
    struct fann *ann = network_from_args(
        argc, argv, 3, "fann_rprop n_epochs n_rows n_layers size_0 ... size_last");
    if (ann == NULL)
        return 2;
    n_epochs = atol(argv[1]);
    n_rows = atol(argv[2]);
    fann_set_training_algorithm(ann, FANN_TRAIN_RPROP);
    fann_set_rprop_increase_factor(ann, 1.2f);
    fann_set_rprop_decrease_factor(ann, 0.5f);
    fann_set_rprop_delta_min(ann, 0.0f);
    fann_set_rprop_delta_max(ann, 50.0f);
    fann_set_rprop_delta_zero(ann, 0.1f);

    double *X, *Y;
    read_input(ann, n_rows, "fann_rprop", &X, &Y);
    unsigned n_in = fann_get_num_input(ann), n_out = fann_get_num_output(ann);
    struct fann_train_data *data = fann_create_train(n_rows, n_in, n_out);
    if (data == NULL) {
        fprintf(stderr, "fann_rprop: fann_create_train failed\n");
        return 2;
    }
    for (r = 0; r < n_rows; r++) {
        for (j = 0; j < n_in; j++)
            data->input[r][j] = X[r * n_in + j];
        for (j = 0; j < n_out; j++)
            data->output[r][j] = Y[r * n_out + j];
    }

    float mse = 0;
    double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), w0 = seconds(CLOCK_MONOTONIC);
    for (i = 0; i < n_epochs; i++)
        mse = fann_train_epoch(ann, data);
    double w1 = seconds(CLOCK_MONOTONIC), c1 = seconds(CLOCK_PROCESS_CPUTIME_ID);

    printf("%.9e %.9e %.9e\n", c1 - c0, w1 - w0, (double)mse);
    fann_destroy_train(data);
    fann_destroy(ann);
    return 0;
}
