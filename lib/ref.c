/* soci-nbd: ref (being written). */
#include <config.h>
