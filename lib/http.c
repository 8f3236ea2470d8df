/* soci-nbd: http (being written). */
#include <config.h>
