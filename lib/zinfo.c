/* soci-nbd: zinfo (being written). */
#include <config.h>
