/*
 * The ordered work pipeline (pipeline.h): a ring of slots with three counters, all under one
 * mutex: items before head were popped, head..next are being worked on or done, next..tail wait
 * for a worker.
 */
#include "pipeline.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    void *item;
    bool done;
} slot_t;

struct pipeline {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    slot_t *ring;
    size_t cap, head, next, tail;
    bool quit;
    void (*work)(void *item);
    pthread_t *th;
    unsigned nth;
};

static void *worker(void *arg)
{
    pipeline_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->next == p->tail)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->quit)
            break;
        slot_t *s = &p->ring[p->next++ % p->cap];
        pthread_mutex_unlock(&p->mu);
        p->work(s->item);
        pthread_mutex_lock(&p->mu);
        s->done = true;
        pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pipeline_t *pipeline_new(unsigned workers, size_t depth, void (*work)(void *item))
{
    pipeline_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cap = depth ? depth : 1;
    p->work = work;
    p->ring = calloc(p->cap, sizeof *p->ring);
    p->th = calloc(workers ? workers : 1, sizeof *p->th);
    if (!p->ring || !p->th) {
        free(p->ring);
        free(p->th);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    for (unsigned i = 0; i < (workers ? workers : 1); i++) {
        if (pthread_create(&p->th[i], NULL, worker, p) != 0)
            break;
        p->nth++;
    }
    if (!p->nth) {
        pipeline_free(p, NULL);
        return NULL;
    }
    return p;
}

bool pipeline_full(const pipeline_t *p)
{
    return p->tail - p->head == p->cap; /* head and tail only move on the caller's thread */
}

void pipeline_push(pipeline_t *p, void *item)
{
    pthread_mutex_lock(&p->mu);
    slot_t *s = &p->ring[p->tail % p->cap];
    s->item = item;
    s->done = false;
    p->tail++;
    pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
}

void *pipeline_pop(pipeline_t *p, bool wait)
{
    void *item = NULL;
    pthread_mutex_lock(&p->mu);
    slot_t *s = &p->ring[p->head % p->cap];
    while (p->head != p->tail && !s->done && wait)
        pthread_cond_wait(&p->done_cv, &p->mu);
    if (p->head != p->tail && s->done) {
        item = s->item;
        p->head++;
    }
    pthread_mutex_unlock(&p->mu);
    return item;
}

void pipeline_free(pipeline_t *p, void (*discard)(void *item))
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nth; i++)
        pthread_join(p->th[i], NULL);
    for (; p->head != p->tail; p->head++)
        if (discard)
            discard(p->ring[p->head % p->cap].item);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->ring);
    free(p->th);
    free(p);
}
