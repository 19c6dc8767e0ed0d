/* bpfast's thread team: a few persistent worker threads that share the blocks of one
 * kernel with the thread that calls it, and the thread limit of the BLAS bpfast calls.
 *
 * How a call uses the cores. Each engine call (fit, predict, ...) says how many
 * threads it may use (bpf_team_enter); a kernel that is worth splitting cuts its work
 * into blocks and hands them to bpf_team_run(), which runs them on the calling thread
 * and up to width - 1 workers, each block whole on one thread. Which thread runs a
 * block never changes its result; how the work is cut is chosen by the kernels
 * (_kernels.pyx) so that the bits do not depend on the width either.
 *
 * One team serves the process. A call that finds it busy (another Python thread's
 * network is using it) runs its blocks alone, so networks trained in separate Python
 * threads never oversubscribe the CPUs. Workers start on first use, never per call;
 * after a job a worker spins for BPF_SPIN_NS waiting for the next one (the kernels of
 * one training step follow each other within microseconds), then sleeps on a
 * condition variable. They block every signal, so Ctrl-C reaches the Python thread.
 * After fork() the child starts with no workers (pthread_atfork resets the team).
 *
 * The BLAS thread limit. OpenBLAS splits a large product over its own threads, and
 * the bits of a product it splits differ from those of one it does not. So while
 * bpfast runs a large product, the BLAS it calls (scipy's, found through the address
 * of sgemm) is held to one thread; the limit found before the first hold, which
 * threadpoolctl sets, is restored after the last, and it caps the default width.
 */
#ifndef BPFAST_TEAM_H
#define BPFAST_TEAM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

typedef void (*bpf_block_fn)(void* ctx, ptrdiff_t block);

enum { BPF_TEAM_MAX = 64 };             /* threads in a call, the caller included */
#define BPF_SPIN_NS 300000LL             /* 0.3 ms */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int started;                         /* workers running */
    int sleeping;                        /* workers waiting on `wake` */
    atomic_long generation;              /* one more for each job posted */
    atomic_int busy;                     /* a caller owns the team */
    /* The job: set under `lock` by the caller that owns the team. */
    bpf_block_fn fn;
    void* ctx;
    ptrdiff_t n_blocks;
    int wanted;                          /* workers the job can use */
    int joined;                          /* workers that joined it */
    int open;                            /* workers may still join */
    atomic_long next;                    /* the next block to claim */
    atomic_int active;                   /* workers still running its blocks */
    atomic_long worker_blocks;           /* blocks workers have run (for tests) */
} bpf_team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static inline long long bpf_team_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Run blocks of the job until none is left; returns how many this thread ran. */
static inline long bpf_team_claim_blocks(bpf_block_fn fn, void* ctx, ptrdiff_t n_blocks) {
    ptrdiff_t b;
    long ran = 0;
    while ((b = atomic_fetch_add(&bpf_team.next, 1)) < n_blocks) {
        fn(ctx, b);
        ran++;
    }
    return ran;
}

static void* bpf_team_worker(void* unused) {
    (void)unused;
    long seen = atomic_load(&bpf_team.generation);
    for (;;) {
        long long since = bpf_team_now_ns();
        int polls = 0;
        while (atomic_load_explicit(&bpf_team.generation, memory_order_acquire) == seen) {
            __builtin_ia32_pause();
            if (++polls % 256 == 0 && bpf_team_now_ns() - since > BPF_SPIN_NS)
                break;
        }
        pthread_mutex_lock(&bpf_team.lock);
        if (atomic_load(&bpf_team.generation) == seen) {
            bpf_team.sleeping++;
            while (atomic_load(&bpf_team.generation) == seen)
                pthread_cond_wait(&bpf_team.wake, &bpf_team.lock);
            bpf_team.sleeping--;
        }
        seen = atomic_load(&bpf_team.generation);
        int join = bpf_team.open && bpf_team.joined < bpf_team.wanted;
        bpf_block_fn fn = bpf_team.fn;
        void* ctx = bpf_team.ctx;
        ptrdiff_t n_blocks = bpf_team.n_blocks;
        if (join) {
            bpf_team.joined++;
            atomic_fetch_add(&bpf_team.active, 1);
        }
        pthread_mutex_unlock(&bpf_team.lock);
        if (join) {
            atomic_fetch_add(&bpf_team.worker_blocks, bpf_team_claim_blocks(fn, ctx, n_blocks));
            atomic_fetch_sub_explicit(&bpf_team.active, 1, memory_order_release);
        }
    }
    return NULL;
}

/* In a child after fork() no worker runs: start again from none. */
static void bpf_team_after_fork(void) {
    pthread_mutex_init(&bpf_team.lock, NULL);
    pthread_cond_init(&bpf_team.wake, NULL);
    bpf_team.started = bpf_team.sleeping = bpf_team.joined = bpf_team.open = 0;
    atomic_store(&bpf_team.busy, 0);
    atomic_store(&bpf_team.active, 0);
}

/* Start workers until `count` run (called with the lock held); returns how many run. */
static int bpf_team_start(int count) {
    static int registered = 0;
    if (!registered) {
        pthread_atfork(NULL, NULL, bpf_team_after_fork);
        registered = 1;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);     /* inherited by the new threads */
    while (bpf_team.started < count) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 8 << 20);    /* BLAS kernels want a deep stack */
        int failed = pthread_create(&thread, &attr, bpf_team_worker, NULL);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        bpf_team.started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return bpf_team.started;
}

/* ---------------------------------------------------------------- a call's width */

/* The calling thread's call: threads asked for (0: the default), and the width that
 * resolves to (0: not resolved yet, done on the first kernel that splits). */
static __thread int bpf_call_threads = 1;
static __thread int bpf_call_width = 1;
/* Whether this thread is in a call, and whether the call holds the BLAS at one thread. */
static __thread int bpf_call_entered = 0;
static __thread int bpf_call_holds_blas = 0;

/* The BLAS thread limit: get/set in the library that holds sgemm (NULL: not found). */
static int (*bpf_blas_get_threads)(void) = NULL;
static void (*bpf_blas_set_threads)(int) = NULL;
static pthread_mutex_t bpf_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int bpf_blas_holds = 0;
static int bpf_blas_saved = 1;

/* Find the thread controls of the BLAS library that defines `blas_function`. */
static void bpf_blas_find_controls(void* blas_function) {
    static const char* getters[] = {"scipy_openblas_get_num_threads64_",
                                    "scipy_openblas_get_num_threads", "openblas_get_num_threads"};
    static const char* setters[] = {"scipy_openblas_set_num_threads64_",
                                    "scipy_openblas_set_num_threads", "openblas_set_num_threads"};
    Dl_info info;
    if (!dladdr(blas_function, &info) || info.dli_fname == NULL)
        return;
    void* library = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (library == NULL)
        return;
    for (int i = 0; i < 3; i++) {
        void* get = dlsym(library, getters[i]);
        void* set = dlsym(library, setters[i]);
        if (get != NULL && set != NULL) {
            bpf_blas_get_threads = (int (*)(void))get;
            bpf_blas_set_threads = (void (*)(int))set;
            return;
        }
    }
}

/* The BLAS thread limit the user set (threadpoolctl, OPENBLAS_NUM_THREADS), or 0 when
 * bpfast cannot read it. */
static int bpf_blas_limit(void) {
    if (bpf_blas_get_threads == NULL)
        return 0;
    pthread_mutex_lock(&bpf_blas_lock);
    int limit = bpf_blas_holds > 0 ? bpf_blas_saved : bpf_blas_get_threads();
    pthread_mutex_unlock(&bpf_blas_lock);
    return limit;
}

/* Hold the BLAS to one thread for a product (hold = 1), or let it go (hold = 0): holds
 * nest; the first saves the user's limit, the last puts it back. */
static void bpf_blas_hold(int hold) {
    if (bpf_blas_set_threads == NULL)
        return;
    pthread_mutex_lock(&bpf_blas_lock);
    if (hold) {
        if (bpf_blas_holds++ == 0) {
            bpf_blas_saved = bpf_blas_get_threads();
            if (bpf_blas_saved != 1)
                bpf_blas_set_threads(1);
        }
    } else if (--bpf_blas_holds == 0 && bpf_blas_saved != 1) {
        bpf_blas_set_threads(bpf_blas_saved);
    }
    pthread_mutex_unlock(&bpf_blas_lock);
}

/* The CPUs this process may run on (its affinity mask). */
static int bpf_allowed_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}

/* What n_threads = None means now: every allowed CPU, at most the BLAS limit. */
static int bpf_default_threads(void) {
    int cpus = bpf_allowed_cpus(), limit = bpf_blas_limit();
    int width = limit > 0 && limit < cpus ? limit : cpus;
    return width < BPF_TEAM_MAX ? width : BPF_TEAM_MAX;
}

/* Calls running now on any thread (between bpf_team_enter and bpf_team_leave). */
static atomic_int bpf_team_callers;

/* A call on this thread may use n_threads threads (0: the default), until leave. */
static inline void bpf_team_enter(int n_threads) {
    bpf_call_threads = n_threads;
    bpf_call_width = n_threads == 1 ? 1 : 0;
    bpf_call_entered = 1;
    atomic_fetch_add_explicit(&bpf_team_callers, 1, memory_order_relaxed);
}

static inline void bpf_team_leave(void) {
    if (bpf_call_holds_blas)
        bpf_blas_hold(0);
    bpf_call_threads = bpf_call_width = 1;
    bpf_call_entered = bpf_call_holds_blas = 0;
    atomic_fetch_sub_explicit(&bpf_team_callers, 1, memory_order_relaxed);
}

/* Hold the BLAS at one thread for a product. Inside a call it stays held until the call
 * leaves (setting OpenBLAS's thread count costs more than a small product); returns
 * whether the caller must let it go after the product (outside a call). */
static inline int bpf_blas_hold_product(void) {
    if (!bpf_call_entered) {
        bpf_blas_hold(1);
        return 1;
    }
    if (!bpf_call_holds_blas) {
        bpf_blas_hold(1);
        bpf_call_holds_blas = 1;
    }
    return 0;
}

/* The threads this call may use, resolved when its first kernel splits: what it asked
 * for, but no more than the allowed CPUs that other calls running now leave free (each
 * keeps one), so that networks trained in separate Python threads do not oversubscribe
 * the CPUs. Only speed depends on it, never a bit. */
static inline int bpf_team_width(void) {
    if (bpf_call_width == 0) {
        int asked = bpf_call_threads;
        int width = asked > 0 ? (asked < BPF_TEAM_MAX ? asked : BPF_TEAM_MAX)
                              : bpf_default_threads();
        int others = atomic_load_explicit(&bpf_team_callers, memory_order_relaxed) - 1;
        if (others > 0) {
            int free_cpus = bpf_allowed_cpus() - others;
            width = width < free_cpus ? width : free_cpus;
        }
        bpf_call_width = width > 1 ? width : 1;
    }
    return bpf_call_width;
}

/* ---------------------------------------------------------------- running a job */

/* Run fn(ctx, b) for b = 0 .. n_blocks - 1, each block on one thread, on this thread
 * and up to width - 1 workers; returns when every block is done. */
static void bpf_team_run(ptrdiff_t n_blocks, bpf_block_fn fn, void* ctx) {
    int width = n_blocks > 1 ? bpf_team_width() : 1;
    int expected = 0;
    if (width > n_blocks)
        width = (int)n_blocks;
    if (width <= 1 || !atomic_compare_exchange_strong(&bpf_team.busy, &expected, 1)) {
        for (ptrdiff_t b = 0; b < n_blocks; b++)
            fn(ctx, b);
        return;
    }
    pthread_mutex_lock(&bpf_team.lock);
    int workers = bpf_team_start(width - 1);
    bpf_team.fn = fn;
    bpf_team.ctx = ctx;
    bpf_team.n_blocks = n_blocks;
    bpf_team.wanted = workers < width - 1 ? workers : width - 1;
    bpf_team.joined = 0;
    bpf_team.open = 1;
    atomic_store(&bpf_team.next, 0);
    atomic_fetch_add_explicit(&bpf_team.generation, 1, memory_order_release);
    if (bpf_team.sleeping > 0)
        pthread_cond_broadcast(&bpf_team.wake);
    pthread_mutex_unlock(&bpf_team.lock);

    bpf_team_claim_blocks(fn, ctx, n_blocks);

    pthread_mutex_lock(&bpf_team.lock);
    bpf_team.open = 0;                  /* a worker that wakes now finds nothing to do */
    pthread_mutex_unlock(&bpf_team.lock);
    /* A worker is finishing a block. On a busy machine it may have lost its CPU:
     * after a short spin, give this one up while waiting. */
    for (int spins = 0; atomic_load_explicit(&bpf_team.active, memory_order_acquire) > 0;
         spins++) {
        if (spins < 4096)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
    atomic_store(&bpf_team.busy, 0);
}

/* Blocks the workers have run since the process started (tests check that they run). */
static inline long bpf_team_worker_blocks(void) {
    return atomic_load(&bpf_team.worker_blocks);
}

/* Where block `b` of `blocks` starts in [0, total): cuts at multiples of `grain`. */
static inline ptrdiff_t bpf_block_start(ptrdiff_t total, ptrdiff_t b, ptrdiff_t blocks,
                                        ptrdiff_t grain) {
    if (b >= blocks)
        return total;
    ptrdiff_t units = (total + grain - 1) / grain;
    ptrdiff_t start = units * b / blocks * grain;
    return start < total ? start : total;
}

/* Where block `b` of 2 * width starts in [0, total), cut at multiples of `grain`: the
 * first `width` blocks share three quarters of it and the last `width` the rest. Each of
 * `width` threads takes a large block, then small ones as it comes free. At one speed,
 * that is one large and one small block each, as balanced as one block each; when the
 * system holds a thread back, the others take its small blocks. Only for work whose
 * results do not depend on where it is cut (the register kernel's products). */
static inline ptrdiff_t bpf_taper_start(ptrdiff_t total, ptrdiff_t b, ptrdiff_t width,
                                        ptrdiff_t grain) {
    if (b >= 2 * width)
        return total;
    ptrdiff_t units = (total + grain - 1) / grain, large = units * 3 / 4;
    ptrdiff_t start = b < width ? large * b / width
                                : large + (units - large) * (b - width) / width;
    start *= grain;
    return start < total ? start : total;
}

#endif
