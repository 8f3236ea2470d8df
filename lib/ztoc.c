/* soci-nbd: ztoc (being written). */
#include <config.h>
