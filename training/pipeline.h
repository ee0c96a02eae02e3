/*
 * An ordered work pipeline for tamis-learn: items pushed in order are worked on by a pool of
 * threads and popped back in the order they were pushed, whatever order the threads finish in.
 */
#ifndef TAMIS_LEARN_PIPELINE_H
#define TAMIS_LEARN_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pipeline pipeline_t;

/* work(item) runs on a worker thread, once per item. NULL when threads or memory are lacking. */
pipeline_t *pipeline_new(unsigned workers, size_t depth, void (*work)(void *item));
/* Whether push would have no room (pop first). */
bool pipeline_full(const pipeline_t *p);
/* Queues item (the pipeline holds it until it is popped); the pipeline must not be full. */
void pipeline_push(pipeline_t *p, void *item);
/* The oldest pushed item once worked on, handed back to the caller; NULL when it is not done
 * yet and !wait, or when nothing is queued. */
void *pipeline_pop(pipeline_t *p, bool wait);
/* Stops the threads once their current items are done; items still queued are given to
 * discard (if not NULL) in order. */
void pipeline_free(pipeline_t *p, void (*discard)(void *item));

#endif
