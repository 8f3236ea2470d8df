/* soci-nbd: registry (being written). */
#include <config.h>
