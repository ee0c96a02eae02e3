/* Native eval: functions (see eval.h). Placeholder table; filled by the eval work. */
#include "rules/eval.h"

const tamis_eval_def_t tamis__evals_body[] = {
    {NULL, NULL, 0, false},
};
